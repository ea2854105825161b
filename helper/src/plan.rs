//! Fixed network identity of every rank container: hostname, IP and MAC, the same on whatever
//! nodes a restored job lands.
//!
//! Addresses come from the job's lease (`lease.rs`): rank r has the r-th address of the job's
//! block, unique across the cluster while the job or a checkpoint of it exists. Generations taken
//! before leases restore with the old formula ([`job_plan`]): the subnet after a reserved first
//! 256 addresses cut into slots of 64, job J in slot `J mod slots` (jobs whose ids differed by a
//! multiple of `slots` collided, which is why leases replaced it).
use crate::error::{Error, Result};
use crate::lease::Lease;
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;

/// Addresses per job under the old slot formula (and so its most ranks).
pub const LEGACY_SLOT: u32 = 64;
const RESERVED: u32 = slurm_ckpt_site::SUBNET_RESERVED;

pub use crate::site::Subnet;

/// Number of per-job address slots of the old formula in `subnet`.
pub fn slots(subnet: &Subnet) -> u32 {
    subnet.job_addresses() / LEGACY_SLOT
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RankIdentity {
    pub rank: u32,
    pub hostname: String,
    pub ip: Ipv4Addr,
    pub mac: String,
}

/// Container hostname of a rank: stable across restores, unique across jobs.
pub fn hostname(job_id: u32, rank: u32) -> String {
    format!("j{job_id}-r{rank}")
}

/// Locally administered unicast MAC derived from the IP (unique where the IP is).
pub fn mac_for(ip: Ipv4Addr) -> String {
    let o = ip.octets();
    format!("02:53:{:02x}:{:02x}:{:02x}:{:02x}", o[0], o[1], o[2], o[3])
}

fn identities(job_id: u32, ntasks: u32, first: u32) -> Vec<RankIdentity> {
    (0..ntasks)
        .map(|rank| {
            let ip = Ipv4Addr::from(first + rank);
            RankIdentity {
                rank,
                hostname: hostname(job_id, rank),
                ip,
                mac: mac_for(ip),
            }
        })
        .collect()
}

/// Identities of all `ntasks` ranks of `job_id` in its lease's block.
pub fn leased_plan(job_id: u32, ntasks: u32, lease: &Lease) -> Result<Vec<RankIdentity>> {
    if ntasks == 0 || ntasks > lease.size {
        return Err(Error::LeaseTooSmall {
            job: job_id,
            ntasks,
            size: lease.size,
        });
    }
    Ok(identities(job_id, ntasks, u32::from(lease.first)))
}

/// Identities under the old slot formula: only for generations taken before leases.
pub fn job_plan(job_id: u32, ntasks: u32, subnet: &Subnet) -> Result<Vec<RankIdentity>> {
    if ntasks == 0 || ntasks > LEGACY_SLOT {
        return Err(Error::TooManyRanks {
            job: job_id,
            limit: slurm_ckpt_site::RankLimit {
                ntasks,
                limit: LEGACY_SLOT,
                why: "addresses of a job checkpointed before address leases",
            },
        });
    }
    let slots = slots(subnet);
    if slots == 0 {
        return Err(Error::SubnetTooSmall(subnet.to_string()));
    }
    let first = u32::from(subnet.base) + RESERVED + (job_id % slots) * LEGACY_SLOT;
    Ok(identities(job_id, ntasks, first))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn net() -> Subnet {
        "10.88.0.0/16".parse().unwrap()
    }

    #[test]
    fn parses_and_rejects_subnets() {
        assert_eq!(net().to_string(), "10.88.0.0/16");
        for bad in [
            "10.88.0.0",
            "10.88.0.1/16",
            "10.88.0.0/30",
            "x/16",
            "10.88.0.0/x",
        ] {
            assert!(bad.parse::<Subnet>().is_err(), "{bad}");
        }
    }

    #[test]
    fn plan_is_deterministic_and_inside_subnet() {
        let a = job_plan(4242, 6, &net()).unwrap();
        assert_eq!(a, job_plan(4242, 6, &net()).unwrap());
        for r in &a {
            let o = r.ip.octets();
            assert_eq!((o[0], o[1]), (10, 88));
            assert!(u32::from(r.ip) >= u32::from(net().base) + RESERVED);
        }
        assert_eq!(a[3].hostname, "j4242-r3");
        assert_eq!(a[0].mac, mac_for(a[0].ip));
    }

    #[test]
    fn consecutive_jobs_never_share_addresses() {
        let mut seen = HashSet::new();
        for job in 1..=slots(&net()) {
            for r in job_plan(job, LEGACY_SLOT, &net()).unwrap() {
                assert!(
                    seen.insert(r.ip),
                    "job {job} rank {} reuses {}",
                    r.rank,
                    r.ip
                );
                assert!(r.ip != Ipv4Addr::new(10, 88, 255, 255));
            }
        }
    }

    #[test]
    fn leased_plan_uses_the_block() {
        let l = Lease {
            job: 7,
            first: Ipv4Addr::new(10, 88, 1, 8),
            size: 136,
            ntasks: 130,
            created: 0,
            ckpt_dir: None,
        };
        let p = leased_plan(7, 130, &l).unwrap();
        assert_eq!(p[0].ip, Ipv4Addr::new(10, 88, 1, 8));
        assert_eq!(p[129].ip, Ipv4Addr::new(10, 88, 1, 137));
        assert_eq!(p[129].hostname, "j7-r129");
        let macs: HashSet<_> = p.iter().map(|r| r.mac.clone()).collect();
        assert_eq!(macs.len(), 130);
        assert!(leased_plan(7, 137, &l).is_err());
    }

    #[test]
    fn too_many_ranks_is_an_error() {
        assert!(job_plan(1, LEGACY_SLOT + 1, &net()).is_err());
        assert!(job_plan(1, 0, &net()).is_err());
    }
}
