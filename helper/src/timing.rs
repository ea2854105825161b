//! Phase timings of checkpoints and restores, recorded per rank (manifest, status records) so a
//! slow checkpoint says where its time went. Phases are consecutive laps of one clock, so they add
//! up to the rank's total by construction.
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// A clock whose laps are consecutive phases.
#[derive(Debug)]
pub struct Laps {
    start: Instant,
    last: Instant,
}

impl Laps {
    pub fn start() -> Self {
        let now = Instant::now();
        Laps {
            start: now,
            last: now,
        }
    }

    /// Seconds since the previous lap (or the start).
    pub fn lap(&mut self) -> f64 {
        let now = Instant::now();
        let s = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        s
    }

    /// Seconds since the start.
    pub fn total(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }
}

/// One rank's checkpoint, in order. `held` (in the rank record) overlaps freeze..wait_dumped.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct CkptPhases {
    /// Waiting until no process of the container has a full descriptor table (an ssh handshake of
    /// the job's launch, `settle.rs`), then for every rank to have settled.
    #[serde(default)]
    pub settle: f64,
    /// Network dropped, container frozen, waiting for the ranks before it in the order and for a
    /// dump slot: until its own dump starts.
    pub freeze: f64,
    /// CRIU's dump through Docker.
    pub dump: f64,
    /// Waiting for every rank to be dumped, then network back and thaw (a job that goes on).
    pub wait_dumped: f64,
    /// Moving (compressing, encrypting, chunking) the images to the shared storage.
    pub pack: f64,
    /// Ownership, sha256 and fsync of the images, the signed rank record.
    pub seal: f64,
    /// The sum: request to sealed.
    pub total: f64,
}

/// One rank's restore, in order.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct RestorePhases {
    pub generation: u32,
    /// Compatibility check and the image checksums.
    pub verify: f64,
    /// Unpacking (decompressing, decrypting) into staging, or pointing Docker at the images.
    pub unpack: f64,
    /// Waiting for the ranks before it in the restore order.
    pub wait: f64,
    /// CRIU's restore through Docker, and the address announcement.
    pub criu: f64,
    /// Waiting for every rank to be restored, then the network released.
    pub network: f64,
    pub total: f64,
}

impl CkptPhases {
    pub fn sum(&self) -> f64 {
        self.settle + self.freeze + self.dump + self.wait_dumped + self.pack + self.seal
    }

    /// One line for `slurm-ckpt status`.
    pub fn line(&self) -> String {
        format!(
            "settle {:.2}s, freeze {:.2}s, dump {:.2}s, wait for all dumped {:.2}s, pack {:.2}s, seal {:.2}s = {:.2}s",
            self.settle,
            self.freeze, self.dump, self.wait_dumped, self.pack, self.seal, self.total
        )
    }
}

impl RestorePhases {
    pub fn sum(&self) -> f64 {
        self.verify + self.unpack + self.wait + self.criu + self.network
    }

    pub fn line(&self) -> String {
        format!(
            "verify {:.2}s, unpack {:.2}s, wait {:.2}s, CRIU restore {:.2}s, network release {:.2}s = {:.2}s",
            self.verify, self.unpack, self.wait, self.criu, self.network, self.total
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn laps_add_up_to_the_total() {
        let mut l = Laps::start();
        let mut p = CkptPhases {
            settle: l.lap(),
            ..Default::default()
        };
        std::thread::sleep(std::time::Duration::from_millis(20));
        p.freeze = l.lap();
        std::thread::sleep(std::time::Duration::from_millis(30));
        p.dump = l.lap();
        p.wait_dumped = l.lap();
        p.pack = l.lap();
        std::thread::sleep(std::time::Duration::from_millis(10));
        p.seal = l.lap();
        p.total = l.total();
        assert!(
            p.freeze >= 0.02 && p.dump >= 0.03 && p.seal >= 0.01,
            "{p:?}"
        );
        assert!((p.total - p.sum()).abs() < 0.005, "{p:?}");
        assert!(p.line().starts_with("settle 0.0"), "{}", p.line());
    }
}
