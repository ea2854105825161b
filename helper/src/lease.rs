//! Per-job address leases: a contiguous block of the site subnet that belongs to one job (its
//! identity job id) for as long as the job or any checkpoint of it exists, so two jobs that run
//! at the same time never share an IP or MAC, and every restore gets the addresses its TCP
//! connections expect.
//!
//! Store, on the checkpoint storage every node shares (`<ckpt_root>/.leases/`, root-only):
//! - `units/<n>`: unit `n` (`UNIT` addresses) is taken. Created with O_EXCL, so of any number of
//!   jobs starting on any nodes exactly one gets a unit; a block is taken unit by unit in
//!   ascending order and given back whole when one of its units is already someone's.
//! - `jobs/<job>.json` (+ `.mac`, signed with the site key like every root record): the job's
//!   lease, what every rank reads. Rank 0 allocates; the others wait for this record.
//!
//! Released (pointer renamed away first, so one remover wins) when the job has ended and no
//! generation of it is left: by the job's epilog, or by `slurm-ckpt gc` for stale ones.
use crate::auth::SiteKey;
use crate::ckpt::{read_json_signed, write_json_signed, Layout};
use crate::error::{Error, Result};
use crate::site::Subnet;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fs;
use std::io::{ErrorKind, Write};
use std::net::Ipv4Addr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Addresses per allocation unit: small enough to waste little, large enough that a 1024-rank job
/// takes 128 files.
pub const UNIT: u32 = 8;
const POLL: Duration = Duration::from_millis(100);

/// One job's block of addresses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The identity job id the lease is keyed by.
    pub job: u32,
    /// First address of the block; rank r has `first + r`.
    pub first: Ipv4Addr,
    /// Addresses in the block (a whole number of units, at least the job's ranks).
    pub size: u32,
    pub ntasks: u32,
    pub created: u64,
    /// The job's checkpoint directory: while a generation is in it, the lease is kept.
    #[serde(default)]
    pub ckpt_dir: Option<PathBuf>,
}

impl Lease {
    pub fn address(&self, rank: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.first) + rank)
    }

    /// Whether a generation of the job still needs these addresses.
    pub fn has_generations(&self) -> bool {
        self.ckpt_dir.as_ref().is_some_and(|d| {
            let l = Layout {
                user_dir: d.clone(),
                job_dir: d.clone(),
            };
            !l.generations().is_empty()
        })
    }
}

/// The lease store under the site's checkpoint root.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

/// What allocation sees of the subnet: `units` units starting at `first`.
#[derive(Debug, Clone, Copy)]
struct Space {
    first: u32,
    units: u32,
}

impl Space {
    fn of(subnet: &Subnet) -> Space {
        Space {
            first: u32::from(subnet.base) + slurm_ckpt_site::SUBNET_RESERVED,
            units: subnet.job_addresses() / UNIT,
        }
    }
}

/// Units a job of `ntasks` ranks needs.
pub fn units_for(ntasks: u32) -> u32 {
    ntasks.div_ceil(UNIT)
}

/// The lowest `need` consecutive units not in `taken`, if any.
fn first_fit(taken: &BTreeSet<u32>, need: u32, units: u32) -> Option<u32> {
    let mut start = 0u32;
    for &t in taken.range(0..units) {
        if t >= start && t - start >= need {
            return Some(start);
        }
        start = start.max(t + 1);
    }
    (units.checked_sub(start)? >= need).then_some(start)
}

impl Store {
    pub fn new(ckpt_root: &Path) -> Store {
        Store {
            root: ckpt_root.join(".leases"),
        }
    }

    fn units_dir(&self) -> PathBuf {
        self.root.join("units")
    }
    fn jobs_dir(&self) -> PathBuf {
        self.root.join("jobs")
    }
    fn unit_path(&self, u: u32) -> PathBuf {
        self.units_dir().join(u.to_string())
    }
    fn refusal(&self, job: u32, run: &str) -> PathBuf {
        self.jobs_dir().join(format!(".refused-{job}-{run}"))
    }
    pub fn pointer(&self, job: u32) -> PathBuf {
        self.jobs_dir().join(format!("{job}.json"))
    }

    fn unreachable(&self, path: &Path, err: std::io::Error) -> Error {
        Error::LeaseStore {
            path: path.to_path_buf(),
            err,
        }
    }

    fn ensure_dirs(&self) -> Result<()> {
        crate::storage::check_mounted()?;
        for d in [self.root.clone(), self.units_dir(), self.jobs_dir()] {
            match fs::DirBuilder::new().mode(0o755).create(&d) {
                Err(e) if e.kind() != ErrorKind::AlreadyExists => {
                    return Err(self.unreachable(&d, e))
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The job's lease, `None` when it has none. A record that does not verify is an error (it
    /// was altered, or is being written: callers that wait retry).
    pub fn lookup(&self, job: u32, key: &SiteKey) -> Result<Option<Lease>> {
        let p = self.pointer(job);
        match fs::symlink_metadata(&p) {
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.unreachable(&p, e)),
            Ok(_) => {}
        }
        let l: Lease = read_json_signed(&p, key)?;
        if l.job != job {
            return Err(Error::Unauthenticated {
                path: p,
                why: "it is the lease of another job",
            });
        }
        Ok(Some(l))
    }

    /// Units taken now (by name; a unit being written counts as taken).
    fn taken(&self) -> Result<BTreeSet<u32>> {
        let d = self.units_dir();
        let rd = fs::read_dir(&d).map_err(|e| self.unreachable(&d, e))?;
        Ok(rd
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .collect())
    }

    /// Take a block for `job` of `ntasks` ranks: first fit, claimed unit by unit with exclusive
    /// creates; a unit lost to a concurrent job gives the claimed ones back and the search goes on
    /// past it.
    pub fn allocate(
        &self,
        job: u32,
        ntasks: u32,
        subnet: &Subnet,
        ckpt_dir: Option<&Path>,
        key: &SiteKey,
    ) -> Result<Lease> {
        self.ensure_dirs()?;
        let space = Space::of(subnet);
        let need = units_for(ntasks.max(1));
        let mut taken = self.taken()?;
        loop {
            let Some(start) = first_fit(&taken, need, space.units) else {
                return Err(Error::SubnetFull {
                    job,
                    ntasks,
                    subnet: subnet.to_string(),
                    used: taken.len() as u32 * UNIT,
                });
            };
            let lease = Lease {
                job,
                first: Ipv4Addr::from(space.first + start * UNIT),
                size: need * UNIT,
                ntasks,
                created: crate::state::now(),
                ckpt_dir: ckpt_dir.map(Path::to_path_buf),
            };
            match self.claim(&lease, start, need, key)? {
                None => {
                    if let Err(e) = write_json_signed(&self.pointer(job), &lease, key) {
                        self.give_back(start..start + need);
                        return Err(match e {
                            Error::Io { path, err } => Error::LeaseStore { path, err },
                            e => e,
                        });
                    }
                    tracing::info!(job, first = %lease.first, size = lease.size, "address lease taken");
                    return Ok(lease);
                }
                Some(lost) => {
                    taken.insert(lost);
                    // Others may have taken more meanwhile: look again.
                    taken.extend(self.taken()?);
                }
            }
        }
    }

    /// Register the addresses a job restored from a generation taken before leases has anyway (the
    /// old slot formula's block at `first`), so that no new lease hands them out while it runs.
    /// Rank 0 only. An error when a lease of another job already holds part of them.
    pub fn reserve_legacy(
        &self,
        job: u32,
        first: Ipv4Addr,
        ntasks: u32,
        subnet: &Subnet,
        ckpt_dir: Option<&Path>,
        key: &SiteKey,
    ) -> Result<()> {
        if self.lookup(job, key)?.is_some_and(|l| l.first == first) {
            return Ok(());
        }
        self.ensure_dirs()?;
        let space = Space::of(subnet);
        let offset = u32::from(first).saturating_sub(space.first);
        let (start, need) = (offset / UNIT, units_for(ntasks.max(1)));
        let lease = Lease {
            job,
            first,
            size: need * UNIT,
            ntasks,
            created: crate::state::now(),
            ckpt_dir: ckpt_dir.map(Path::to_path_buf),
        };
        if let Some(lost) = self.claim(&lease, start, need, key)? {
            let holder = fs::read(self.unit_path(lost))
                .ok()
                .and_then(|b| serde_json::from_slice::<Lease>(&b).ok())
                .map(|l| l.job);
            return Err(Error::LegacyAddressesTaken { job, first, holder });
        }
        write_json_signed(&self.pointer(job), &lease, key)
    }

    /// Claim units `start..start+need` for `lease`; `Some(u)` when unit `u` was already taken (the
    /// ones claimed before it are given back).
    fn claim(&self, lease: &Lease, start: u32, need: u32, key: &SiteKey) -> Result<Option<u32>> {
        let body = serde_json::to_vec(lease).map_err(|why| Error::EncodeJson {
            path: self.pointer(lease.job),
            what: "address lease",
            why,
        })?;
        let tag = key.sign(&body);
        for u in start..start + need {
            let p = self.unit_path(u);
            let created = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o644)
                .open(&p);
            match created {
                Ok(mut f) => {
                    let written = f
                        .write_all(&body)
                        .and_then(|_| f.sync_all())
                        .and_then(|_| fs::write(crate::auth::mac_path(&p), tag.as_bytes()));
                    if let Err(e) = written {
                        self.give_back(start..u + 1);
                        return Err(self.unreachable(&p, e));
                    }
                }
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                    self.give_back(start..u);
                    return Ok(Some(u));
                }
                Err(e) => {
                    self.give_back(start..u);
                    return Err(self.unreachable(&p, e));
                }
            }
        }
        Ok(None)
    }

    fn give_back(&self, units: std::ops::Range<u32>) {
        for u in units {
            let p = self.unit_path(u);
            let _ = fs::remove_file(crate::auth::mac_path(&p));
            let _ = fs::remove_file(&p);
        }
    }

    /// Rank 0 takes the job's lease (or finds the one it already has: a requeued or restored
    /// job); every other rank waits up to `timeout` for it.
    pub async fn for_rank(
        &self,
        req: &LeaseRequest<'_>,
        key: &SiteKey,
        timeout: Duration,
    ) -> Result<Lease> {
        let end = tokio::time::Instant::now() + timeout;
        loop {
            let waiting = tokio::time::Instant::now() < end;
            match self.lookup(req.job, key) {
                Ok(Some(l)) if l.size >= req.ntasks => return Ok(l),
                // A later step of the job with more ranks than the first: rank 0 trades the
                // lease for a larger one unless a generation still needs its addresses.
                Ok(Some(l)) if req.rank == 0 && !l.has_generations() => {
                    tracing::info!(
                        job = req.job,
                        size = l.size,
                        ntasks = req.ntasks,
                        "lease too small for this step: taking a larger one"
                    );
                    self.remove(&l)?;
                }
                Ok(Some(l)) if req.rank == 0 || !waiting => {
                    return Err(Error::LeaseTooSmall {
                        job: req.job,
                        ntasks: req.ntasks,
                        size: l.size,
                    })
                }
                Ok(None) if req.rank == 0 => {
                    let got = self.allocate(req.job, req.ntasks, req.subnet, req.ckpt_dir, key);
                    if let Err(e) = &got {
                        // Best effort: without it the other ranks wait out their timeout.
                        let _ = fs::write(self.refusal(req.job, &req.run), e.to_string());
                    }
                    return got;
                }
                _ if req.rank != 0 && self.refusal(req.job, &req.run).exists() => {
                    let why =
                        fs::read_to_string(self.refusal(req.job, &req.run)).unwrap_or_default();
                    return Err(Error::Peer {
                        rank: 0,
                        gone: false,
                        storage_refused: false,
                        why: format!("rank 0 could not take the job's address lease: {why}"),
                    });
                }
                Ok(None) if !waiting => {
                    return Err(Error::Timeout {
                        what: format!("rank 0 to take job {}'s address lease", req.job),
                        secs: timeout.as_secs(),
                    })
                }
                // Not there yet, or being replaced by a larger one: retry until the deadline.
                Ok(_) => tokio::time::sleep(POLL).await,
                // Being written by rank 0 (does not verify yet). Rank 0 itself, the only writer,
                // takes an unverifiable record as an error (altered, or another site key).
                Err(Error::Unauthenticated { .. }) | Err(Error::BadJson { .. })
                    if waiting && req.rank != 0 =>
                {
                    tokio::time::sleep(POLL).await
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Give the job's lease back unless a generation of it remains; `Ok(true)` when this call
    /// released it. Safe from several nodes at once: the record is renamed away first, and only
    /// the one rename that succeeds removes the units.
    pub fn release(&self, job: u32, key: &SiteKey) -> Result<bool> {
        let refused = format!(".refused-{job}-");
        for e in fs::read_dir(self.jobs_dir())
            .into_iter()
            .flatten()
            .flatten()
        {
            if e.file_name()
                .to_str()
                .is_some_and(|n| n.starts_with(&refused))
            {
                let _ = fs::remove_file(e.path());
            }
        }
        let Some(lease) = self.lookup(job, key)? else {
            return Ok(false);
        };
        if lease.has_generations() {
            return Ok(false);
        }
        self.remove(&lease)
    }

    /// Release `lease` whatever holds it (callers decided it is free); `Ok(false)` when another
    /// remover got there first.
    pub fn remove(&self, lease: &Lease) -> Result<bool> {
        let p = self.pointer(lease.job);
        let gone = self.jobs_dir().join(format!(
            ".released-{}-{}-{}",
            lease.job,
            std::process::id(),
            crate::state::now()
        ));
        match fs::rename(&p, &gone) {
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(self.unreachable(&p, e)),
            Ok(()) => {}
        }
        let space_first = u32::from(lease.first);
        // Units are named by index from the subnet's first leasable address; recover it from any
        // unit file that names this lease.
        for entry in fs::read_dir(self.units_dir())
            .into_iter()
            .flatten()
            .flatten()
        {
            let path = entry.path();
            if path.extension().is_some() {
                continue;
            }
            let mine = fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice::<Lease>(&b).ok())
                .is_some_and(|l| l.job == lease.job && u32::from(l.first) == space_first);
            if mine {
                let _ = fs::remove_file(crate::auth::mac_path(&path));
                let _ = fs::remove_file(&path);
            }
        }
        let _ = fs::remove_file(crate::auth::mac_path(&p));
        let _ = fs::remove_file(&gone);
        tracing::info!(job = lease.job, first = %lease.first, "address lease released");
        Ok(true)
    }

    /// Every lease record (job id, and the record or why it cannot be read).
    pub fn all(&self, key: &SiteKey) -> Vec<(u32, Result<Lease>)> {
        let mut out: Vec<(u32, Result<Lease>)> = fs::read_dir(self.jobs_dir())
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let n = e.file_name();
                let job: u32 = n.to_str()?.strip_suffix(".json")?.parse().ok()?;
                // A signed record copied under another job's name is not that job's lease.
                let lease = read_json_signed::<Lease>(&e.path(), key).and_then(|l| {
                    if l.job == job {
                        Ok(l)
                    } else {
                        Err(Error::Unauthenticated {
                            path: e.path(),
                            why: "it is the lease of another job",
                        })
                    }
                });
                Some((job, lease))
            })
            .collect();
        out.sort_by_key(|(j, _)| *j);
        out
    }

    /// Leases of jobs Slurm no longer knows (`gone(job)`) that have no generation left.
    pub fn stale(&self, key: &SiteKey, mut gone: impl FnMut(u32) -> bool) -> Vec<Lease> {
        let mut out = vec![];
        for (job, lease) in self.all(key) {
            match lease {
                Ok(l) if !l.has_generations() && gone(job) => out.push(l),
                Ok(_) => {}
                Err(e) => tracing::warn!(job, "lease record not used: {e}"),
            }
        }
        out
    }

    /// Release the stale leases (see [`Store::stale`]); returns the ones released.
    pub fn reclaim_stale(&self, key: &SiteKey, gone: impl FnMut(u32) -> bool) -> Vec<Lease> {
        self.stale(key, gone)
            .into_iter()
            .filter(|l| match self.remove(l) {
                Ok(released) => released,
                Err(e) => {
                    tracing::warn!(job = l.job, "releasing a stale lease: {e}");
                    false
                }
            })
            .collect()
    }
}

/// What a rank asks the store for.
#[derive(Debug, Clone)]
pub struct LeaseRequest<'a> {
    /// The identity job id (the job whose network identity this job has).
    pub job: u32,
    pub rank: u32,
    pub ntasks: u32,
    pub subnet: &'a Subnet,
    pub ckpt_dir: Option<&'a Path>,
    /// This step's run (`s<step>-r<restart count>`): names rank 0's refusal, so the waiting ranks
    /// of this run stop at once and no later run takes an old refusal for its own.
    pub run: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("slurm-ckpt-lease-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }
    fn key() -> SiteKey {
        SiteKey::derive(b"test secret")
    }
    fn small() -> Subnet {
        // 1024 addresses: 767 leasable, 95 units.
        "10.88.0.0/22".parse().unwrap()
    }
    fn req(job: u32, rank: u32, ntasks: u32, subnet: &Subnet) -> LeaseRequest<'_> {
        LeaseRequest {
            job,
            rank,
            ntasks,
            subnet,
            ckpt_dir: None,
            run: "s0-r0".into(),
        }
    }

    #[test]
    fn first_fit_skips_taken_units() {
        let t: BTreeSet<u32> = [0, 1, 3, 6].into_iter().collect();
        assert_eq!(first_fit(&t, 1, 10), Some(2));
        assert_eq!(first_fit(&t, 2, 10), Some(4));
        assert_eq!(first_fit(&t, 3, 10), Some(7));
        assert_eq!(first_fit(&t, 4, 10), None);
        assert_eq!(first_fit(&BTreeSet::new(), 10, 10), Some(0));
        assert_eq!(first_fit(&BTreeSet::new(), 11, 10), None);
    }

    #[test]
    fn jobs_the_old_slot_formula_collided_get_disjoint_blocks() {
        let d = tmp("disjoint");
        let s = Store::new(&d);
        let net = small();
        // Under the old formula jobs 5 and 5 + slots shared slot 5.
        let old_slots = crate::plan::slots(&net);
        let a = s.allocate(5, 20, &net, None, &key()).unwrap();
        let b = s.allocate(5 + old_slots, 20, &net, None, &key()).unwrap();
        let ips = |l: &Lease| (0..l.ntasks).map(|r| l.address(r)).collect::<BTreeSet<_>>();
        assert!(ips(&a).is_disjoint(&ips(&b)));
        assert_eq!(a.size, 24);
        assert_eq!(a.first, Ipv4Addr::new(10, 88, 1, 0));
        assert_eq!(b.first, Ipv4Addr::new(10, 88, 1, 24));
        assert_eq!(s.lookup(5, &key()).unwrap(), Some(a));
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn concurrent_allocations_never_share_a_unit() {
        let d = tmp("concurrent");
        let net = small();
        let handles: Vec<_> = (0..12u32)
            .map(|job| {
                let d = d.clone();
                std::thread::spawn(move || {
                    Store::new(&d)
                        .allocate(job + 1, 1 + job % 20, &net, None, &key())
                        .unwrap()
                })
            })
            .collect();
        let leases: Vec<Lease> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let mut seen = BTreeSet::new();
        for l in &leases {
            for r in 0..l.size {
                assert!(seen.insert(l.address(r)), "{} shared", l.address(r));
            }
        }
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_full_subnet_is_a_clear_error() {
        let d = tmp("full");
        let s = Store::new(&d);
        let net = small();
        s.allocate(1, 700, &net, None, &key()).unwrap();
        let e = s.allocate(2, 100, &net, None, &key()).unwrap_err();
        assert!(matches!(e, Error::SubnetFull { job: 2, .. }), "{e}");
        assert!(e.to_string().contains("gc"), "{e}");
        // Released, the space is free again.
        assert!(s.release(1, &key()).unwrap());
        assert!(!s.release(1, &key()).unwrap());
        s.allocate(2, 100, &net, None, &key()).unwrap();
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_job_from_before_leases_reserves_its_slot() {
        let d = tmp("legacy");
        let s = Store::new(&d);
        let net = small();
        let slot = crate::plan::job_plan(3, 4, &net).unwrap()[0].ip;
        s.reserve_legacy(3, slot, 4, &net, None, &key()).unwrap();
        // Again (a later restore): fine.
        s.reserve_legacy(3, slot, 4, &net, None, &key()).unwrap();
        // New leases go around it.
        let l = s.allocate(4, 700, &net, None, &key()).unwrap_err();
        assert!(matches!(l, Error::SubnetFull { .. }));
        let other = crate::plan::job_plan(3 + crate::plan::slots(&net), 4, &net).unwrap()[0].ip;
        assert_eq!(other, slot);
        let e = s
            .reserve_legacy(3 + crate::plan::slots(&net), other, 4, &net, None, &key())
            .unwrap_err();
        assert!(
            matches!(
                e,
                Error::LegacyAddressesTaken {
                    holder: Some(3),
                    ..
                }
            ),
            "{e}"
        );
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn an_unwritable_store_refuses_the_job() {
        let d = tmp("unwritable").join("not-a-dir");
        fs::write(&d, b"").unwrap();
        let e = Store::new(&d)
            .allocate(1, 4, &small(), None, &key())
            .unwrap_err();
        assert!(matches!(e, Error::LeaseStore { .. }), "{e}");
    }

    #[test]
    fn a_forged_lease_is_refused() {
        let d = tmp("forged");
        let s = Store::new(&d);
        s.allocate(9, 4, &small(), None, &key()).unwrap();
        let other = SiteKey::derive(b"another site");
        assert!(matches!(
            s.lookup(9, &other),
            Err(Error::Unauthenticated { .. })
        ));
        fs::remove_dir_all(&d).unwrap();
    }

    #[tokio::test]
    async fn ranks_wait_for_rank_0s_lease_and_a_requeue_reuses_it() {
        let d = tmp("ranks");
        let s = Store::new(&d);
        let net = small();
        let t = Duration::from_secs(5);
        let waiting = {
            let s = s.clone();
            tokio::spawn(async move { s.for_rank(&req(77, 3, 16, &net), &key(), t).await })
        };
        tokio::time::sleep(Duration::from_millis(250)).await;
        let l0 = s.for_rank(&req(77, 0, 16, &net), &key(), t).await.unwrap();
        assert_eq!(waiting.await.unwrap().unwrap(), l0);
        // The requeued run finds the same lease.
        assert_eq!(
            s.for_rank(&req(77, 0, 16, &net), &key(), t).await.unwrap(),
            l0
        );
        // A later, larger step: rank 0 takes a larger lease, the others wait for it.
        let waiting = {
            let s = s.clone();
            tokio::spawn(async move { s.for_rank(&req(77, 5, 40, &net), &key(), t).await })
        };
        tokio::time::sleep(Duration::from_millis(250)).await;
        let big = s.for_rank(&req(77, 0, 40, &net), &key(), t).await.unwrap();
        assert_eq!(big.size, 40);
        assert_eq!(waiting.await.unwrap().unwrap(), big);
        assert_eq!(
            s.taken().unwrap().len(),
            5,
            "the small lease's units given back"
        );
        // Rank 0 cannot take one (subnet full): the others stop at once, not at their timeout.
        s.allocate(1000, 700, &net, None, &key()).unwrap();
        let waiting = {
            let s = s.clone();
            tokio::spawn(async move { s.for_rank(&req(79, 1, 100, &net), &key(), t).await })
        };
        let e = s
            .for_rank(&req(79, 0, 100, &net), &key(), t)
            .await
            .unwrap_err();
        assert!(matches!(e, Error::SubnetFull { .. }), "{e}");
        let e = waiting.await.unwrap().unwrap_err();
        assert!(
            matches!(e, Error::Peer { rank: 0, .. }) && e.to_string().contains("no free block"),
            "{e}"
        );
        // The epilog's release clears the refusal: the next run is not refused by it.
        s.release(79, &key()).unwrap();
        assert!(!s.refusal(79, "s0-r0").exists());
        // No rank 0: the others give up with a named timeout.
        let e = s
            .for_rank(&req(78, 1, 4, &net), &key(), Duration::from_millis(300))
            .await
            .unwrap_err();
        assert!(matches!(e, Error::Timeout { .. }), "{e}");
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_lease_with_generations_is_kept_and_gc_reclaims_stale_ones() {
        let d = tmp("gc");
        let s = Store::new(&d);
        let net = small();
        let ckpt = d.join("user").join("5");
        fs::create_dir_all(ckpt.join("g0001")).unwrap();
        fs::write(ckpt.join("g0001").join("manifest.json"), b"{}").unwrap();
        s.allocate(5, 4, &net, Some(&ckpt), &key()).unwrap();
        s.allocate(6, 4, &net, None, &key()).unwrap();
        s.allocate(7, 4, &net, None, &key()).unwrap();
        assert!(!s.release(5, &key()).unwrap(), "a generation needs it");
        // Slurm knows job 7 still; 5 has a generation; only 6 is stale.
        let got = s.reclaim_stale(&key(), |j| j != 7);
        assert_eq!(got.iter().map(|l| l.job).collect::<Vec<_>>(), vec![6]);
        fs::remove_dir_all(ckpt.join("g0001")).unwrap();
        // A record copied under another name is never acted on.
        fs::copy(s.pointer(7), s.pointer(8)).unwrap();
        fs::copy(
            crate::auth::mac_path(&s.pointer(7)),
            crate::auth::mac_path(&s.pointer(8)),
        )
        .unwrap();
        let got = s.reclaim_stale(&key(), |j| j != 7);
        assert_eq!(got.iter().map(|l| l.job).collect::<Vec<_>>(), vec![5]);
        assert!(s.lookup(7, &key()).unwrap().is_some());
        assert_eq!(s.taken().unwrap().len(), 1);
        fs::remove_dir_all(&d).unwrap();
    }
}
