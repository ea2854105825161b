//! Fixed network identity of every rank container: hostname, IP and MAC are a pure function of
//! (job id, rank, subnet), so a restored job gets exactly the same identity on whatever nodes it
//! lands, with no address allocator to keep consistent across nodes.
//!
//! Addresses: the subnet is cut into slots of `MAX_RANKS` addresses after a reserved first 256
//! (gateway, infrastructure); job J uses slot `J mod slots`. Concurrent jobs collide only when
//! their ids differ by a multiple of `slots` (1019 for a /16), which docs/ARCHITECTURE.md notes.
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;

/// Most ranks one job may run as containers (addresses per slot).
pub const MAX_RANKS: u32 = 64;
const RESERVED: u32 = 256;

pub use crate::site::Subnet;

/// Number of per-job address slots in `subnet`.
pub fn slots(subnet: &Subnet) -> u32 {
    subnet.size().saturating_sub(RESERVED + 1) / MAX_RANKS
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

/// Identities of all `ntasks` ranks of `job_id`.
pub fn job_plan(job_id: u32, ntasks: u32, subnet: &Subnet) -> Result<Vec<RankIdentity>> {
    if ntasks == 0 || ntasks > MAX_RANKS {
        return Err(Error::TooManyRanks {
            job: job_id,
            ntasks,
            max: MAX_RANKS,
        });
    }
    let slots = slots(subnet);
    if slots == 0 {
        return Err(Error::SubnetTooSmall(subnet.to_string()));
    }
    let first = u32::from(subnet.base) + RESERVED + (job_id % slots) * MAX_RANKS;
    Ok((0..ntasks)
        .map(|rank| {
            let ip = Ipv4Addr::from(first + rank);
            RankIdentity {
                rank,
                hostname: hostname(job_id, rank),
                ip,
                mac: mac_for(ip),
            }
        })
        .collect())
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
            for r in job_plan(job, MAX_RANKS, &net()).unwrap() {
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
    fn too_many_ranks_is_an_error() {
        assert!(job_plan(1, MAX_RANKS + 1, &net()).is_err());
        assert!(job_plan(1, 0, &net()).is_err());
    }
}
