//! Before a checkpoint holds any rank: wait (bounded) until no process of the rank's container has
//! a full descriptor table.
//!
//! CRIU's parasite needs one free descriptor in every process it dumps (a memfd it creates inside
//! the victim). OpenSSH's pre-authentication child takes that away on purpose: its sandbox lowers
//! its own RLIMIT_NOFILE to 1 (seccomp sandbox, Linux) or 0 (rlimit sandbox) with a hard limit just
//! as low, so no one can raise it back (openssh-portable, `ssh_sandbox_child` in
//! sandbox-seccomp-filter.c and sandbox-rlimit.c). Such a child lives for the ssh handshakes of a
//! job's launch (rank 0's sshd readiness probes, then the MPI launcher's connections): a checkpoint
//! requested in those seconds failed with "Can't create memfd in victim: Too many open files".
//!
//! The handshake only ends if both sides run, so the wait must happen before any rank blocks its
//! network or freezes (see `supervise::checkpoint`); reading /proc is behind [`ProcTable`] so the
//! decision is tested with a fake.
use std::path::Path;
use std::time::{Duration, Instant};

/// A process whose descriptor table is full: CRIU cannot infect it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub pid: u32,
    /// The process's own name (`/proc/PID/comm`, the user's to choose: print it escaped).
    pub comm: String,
    pub open: u64,
    pub limit: u64,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "pid {} ({:?}) has {} descriptors open of its limit {}",
            self.pid, self.comm, self.open, self.limit
        )
    }
}

/// The few facts about the host's processes the wait needs (the host's /proc, or a fake).
pub trait ProcTable {
    /// Every process id on the host.
    fn pids(&self) -> Vec<u32>;
    /// The process's pid namespace (`/proc/PID/ns/pid`), None if it is gone.
    fn pid_ns(&self, pid: u32) -> Option<String>;
    /// Its soft RLIMIT_NOFILE; None when unlimited, unreadable or gone (then it cannot be full).
    fn nofile_soft(&self, pid: u32) -> Option<u64>;
    /// Its open descriptors, counted up to `cap` at most (a table is full at its limit: counting
    /// further would only cost time on a process with very many), None if it is gone.
    fn open_fds(&self, pid: u32, cap: u64) -> Option<u64>;
    fn comm(&self, pid: u32) -> String;
    /// The pid namespace of the caller (the supervisor, on the host).
    fn own_ns(&self) -> Option<String>;
}

/// The processes of the container whose init is `init` (host pid) with a full descriptor table.
/// The container's processes are those in its init's pid namespace; a container that shares the
/// host's has none of its own to look at (every process of the node would count).
pub fn full_tables(p: &dyn ProcTable, init: u32) -> Vec<Holder> {
    let Some(ns) = p.pid_ns(init) else {
        return vec![];
    };
    if p.own_ns().as_deref() == Some(ns.as_str()) {
        return vec![];
    }
    p.pids()
        .into_iter()
        .filter(|pid| p.pid_ns(*pid).as_deref() == Some(ns.as_str()))
        .filter_map(|pid| {
            let limit = p.nofile_soft(pid)?;
            let open = p.open_fds(pid, limit)?;
            (open >= limit).then(|| Holder {
                pid,
                comm: p.comm(pid),
                open,
                limit,
            })
        })
        .collect()
}

/// How long to wait, how often to look, and how long the container must have stayed clear.
#[derive(Debug, Clone, Copy)]
pub struct Wait {
    /// Past this the checkpoint goes on regardless (CRIU then says why it fails).
    pub bound: Duration,
    pub poll: Duration,
    /// Clear for this long before the wait ends (zero: at the first clear look). During a launch
    /// one handshake often follows another (rank 0's readiness probe, then the MPI launcher's own
    /// connection): one clear look between them proves nothing.
    pub quiet: Duration,
}

/// How the wait ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    /// Clear at the first look (and for the quiet time).
    Clear,
    /// Clear after waiting this long for the holders first seen.
    Waited { waited: Duration, held: Vec<Holder> },
    /// Still full at the bound: these held it at the last look.
    Gave { waited: Duration, held: Vec<Holder> },
}

/// Wait until no process of the container (init `init`) has had a full table for `w.quiet`, up to
/// `w.bound`.
pub async fn settle(p: &dyn ProcTable, init: u32, w: Wait) -> Settled {
    let start = Instant::now();
    let mut clear_since: Option<Instant> = None;
    let mut first_held: Vec<Holder> = vec![];
    loop {
        // A few ms on a node's few hundred processes: done inline, between polls.
        let held = full_tables(p, init);
        let now = Instant::now();
        if held.is_empty() {
            let since = *clear_since.get_or_insert(now);
            if now.duration_since(since) >= w.quiet {
                return if first_held.is_empty() {
                    Settled::Clear
                } else {
                    Settled::Waited {
                        waited: start.elapsed(),
                        held: first_held,
                    }
                };
            }
        } else {
            clear_since = None;
            if first_held.is_empty() {
                first_held = held.clone();
            }
        }
        if now.duration_since(start) >= w.bound {
            return Settled::Gave {
                waited: start.elapsed(),
                held,
            };
        }
        tokio::time::sleep(w.poll).await;
    }
}

/// The host's /proc (as root: the supervisor reads any process's descriptors and limits). Only
/// directory listings, link names and two small text files per process: nothing is followed into
/// a path the job controls.
pub struct HostProcs;

impl ProcTable for HostProcs {
    fn pids(&self) -> Vec<u32> {
        let Ok(rd) = std::fs::read_dir("/proc") else {
            return vec![];
        };
        rd.flatten()
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .collect()
    }

    fn pid_ns(&self, pid: u32) -> Option<String> {
        let link = std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok()?;
        Some(link.to_string_lossy().into_owned())
    }

    fn nofile_soft(&self, pid: u32) -> Option<u64> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
        nofile_from_limits(&text)
    }

    fn open_fds(&self, pid: u32, cap: u64) -> Option<u64> {
        let rd = std::fs::read_dir(Path::new(&format!("/proc/{pid}/fd"))).ok()?;
        Some(rd.take(usize::try_from(cap).unwrap_or(usize::MAX)).count() as u64)
    }

    fn comm(&self, pid: u32) -> String {
        std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .map(|c| c.trim_end().to_string())
            .unwrap_or_default()
    }

    fn own_ns(&self) -> Option<String> {
        let link = std::fs::read_link("/proc/self/ns/pid").ok()?;
        Some(link.to_string_lossy().into_owned())
    }
}

/// The soft limit of "Max open files" in a /proc/PID/limits text; None when unlimited or absent.
pub fn nofile_from_limits(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line.trim_start_matches("Max open files")
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
pub mod fake {
    //! A host whose container (pid namespace "ns-c", init pid 100) has an sshd pre-auth child
    //! (pid 101) with a full table for the first `full_polls` looks, `None`: forever.
    use super::ProcTable;
    use std::sync::atomic::{AtomicU32, Ordering};

    pub struct FakeProcs {
        pub full_polls: Option<u32>,
        pub looks: AtomicU32,
    }

    impl FakeProcs {
        pub fn new(full_polls: Option<u32>) -> Self {
            FakeProcs {
                full_polls,
                looks: AtomicU32::new(0),
            }
        }

        pub fn looks(&self) -> u32 {
            self.looks.load(Ordering::SeqCst)
        }

        fn full_now(&self) -> bool {
            self.full_polls.is_none_or(|n| self.looks() <= n)
        }
    }

    impl ProcTable for FakeProcs {
        fn pids(&self) -> Vec<u32> {
            self.looks.fetch_add(1, Ordering::SeqCst);
            // 1: the host's init (another namespace); 100: the container's init (sshd -D).
            vec![1, 100, 101]
        }
        fn pid_ns(&self, pid: u32) -> Option<String> {
            Some(if pid == 1 { "ns-host" } else { "ns-c" }.into())
        }
        fn nofile_soft(&self, pid: u32) -> Option<u64> {
            match pid {
                // The host's init is "full" too: it is not the container's, so it must not count.
                1 => Some(4),
                101 if self.full_now() => Some(1),
                _ => Some(1024),
            }
        }
        fn open_fds(&self, pid: u32, cap: u64) -> Option<u64> {
            Some(if pid == 1 { 4 } else { 3 }.min(cap))
        }
        fn comm(&self, pid: u32) -> String {
            if pid == 101 { "sshd" } else { "other" }.into()
        }
        fn own_ns(&self) -> Option<String> {
            Some("ns-host".into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::FakeProcs;
    use super::*;

    const W: Wait = Wait {
        bound: Duration::from_millis(400),
        poll: Duration::from_millis(10),
        quiet: Duration::ZERO,
    };

    #[tokio::test]
    async fn a_table_that_clears_after_two_polls_is_waited_for() {
        let p = FakeProcs::new(Some(2));
        match settle(&p, 100, W).await {
            Settled::Waited { held, .. } => {
                assert_eq!(held.len(), 1);
                assert_eq!((held[0].pid, held[0].comm.as_str()), (101, "sshd"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(p.looks(), 3);
    }

    #[tokio::test]
    async fn a_table_that_never_clears_is_given_up_at_the_bound() {
        let p = FakeProcs::new(None);
        let t0 = Instant::now();
        match settle(&p, 100, W).await {
            Settled::Gave { waited, held } => {
                assert!(waited >= W.bound, "{waited:?}");
                assert_eq!(held.iter().map(|h| h.pid).collect::<Vec<_>>(), [101]);
                let text = held[0].to_string();
                assert!(text.contains("pid 101 (\"sshd\")"), "{text}");
            }
            other => panic!("{other:?}"),
        }
        assert!(t0.elapsed() < W.bound * 3, "{:?}", t0.elapsed());
    }

    #[tokio::test]
    async fn a_clear_container_is_not_waited_for() {
        let p = FakeProcs::new(Some(0));
        assert_eq!(settle(&p, 100, W).await, Settled::Clear);
        assert_eq!(p.looks(), 1);
    }

    #[tokio::test]
    async fn the_quiet_time_must_pass_clear() {
        let p = FakeProcs::new(Some(0));
        let w = Wait {
            quiet: Duration::from_millis(50),
            ..W
        };
        let t0 = Instant::now();
        assert_eq!(settle(&p, 100, w).await, Settled::Clear);
        assert!(t0.elapsed() >= w.quiet);
        assert!(p.looks() >= 5, "{}", p.looks());
    }

    #[test]
    fn only_the_containers_own_processes_count() {
        // pid 1 (host) is full but outside the namespace; 101 clears after its first look.
        let p = FakeProcs::new(Some(1));
        let held = full_tables(&p, 100);
        assert_eq!(held.iter().map(|h| h.pid).collect::<Vec<_>>(), [101]);
        assert!(full_tables(&p, 100).is_empty());
        // A "container" in the host's namespace (pid 1's): nothing is looked at.
        let p = FakeProcs::new(None);
        assert!(full_tables(&p, 1).is_empty());
        assert!(!full_tables(&p, 100).is_empty());
    }

    #[test]
    fn the_soft_nofile_limit_is_read_from_proc_limits() {
        let text = "Limit                     Soft Limit           Hard Limit           Units     \n\
                    Max processes             0                    0                    processes \n\
                    Max open files            1                    1                    files     \n";
        assert_eq!(nofile_from_limits(text), Some(1));
        let unlimited =
            "Max open files            unlimited            unlimited            files\n";
        assert_eq!(nofile_from_limits(unlimited), None);
        assert_eq!(nofile_from_limits(""), None);
    }

    #[test]
    fn this_process_is_found_in_its_own_namespace() {
        // The real /proc, read as any user: our own pid is among our namespace's processes.
        let me = std::process::id();
        let host = HostProcs;
        assert!(host.pid_ns(me).is_some());
        assert!(host.nofile_soft(me).is_some_and(|l| l > 0));
        assert_eq!(host.open_fds(me, 2), Some(2));
        assert!(host.pids().contains(&me));
        assert_eq!(host.own_ns(), host.pid_ns(me));
        // Our own namespace is the "host" one here: nothing is looked at.
        assert!(full_tables(&host, me).is_empty());
    }
}
