//! The checkpoint and restore sequences of several ranks, run together in one process against the
//! fake engine (`engine::fake`) and a temporary "shared storage": the real barriers, markers,
//! sealing and commit, without Docker, root or a cluster.
use super::{Rank, SuperviseArgs};
use crate::auth::SiteKey;
use crate::barrier::{marker, touch};
use crate::ckpt::{read_json_signed, Layout, Manifest};
use crate::engine::fake::{Call, FakeEngine, Fault, Op};
use crate::engine::ContainerEngine;
use crate::error::Error;
use crate::settle::fake::FakeProcs;
use crate::site::{OrderPolicy, SiteConfig};
use crate::state::{ContainerState, RankState};
use futures_util::future::join_all;
use std::path::{Path, PathBuf};
use std::time::Duration;

const JOB: u32 = 42;
const ALL: [OrderPolicy; 5] = OrderPolicy::ALL;

struct World {
    tmp: tempfile::TempDir,
    args: Vec<SuperviseArgs>,
}

impl World {
    fn new(policy: OrderPolicy, ntasks: u32, timeout_secs: u64) -> World {
        let tmp = tempfile::tempdir().expect("temp dir");
        let site = SiteConfig {
            ckpt_root: tmp.path().join("ckpt"),
            runtime_dir: tmp.path().join("run"),
            stage_dir: tmp.path().join("stage"),
            order_policy: policy,
            timeout_secs,
            ..SiteConfig::default()
        };
        let args = (0..ntasks)
            .map(|rank| SuperviseArgs {
                job: JOB,
                step: 0,
                rank,
                ntasks,
                node: format!("n{rank}"),
                uid: 1000,
                gid: 1000,
                image: "img".into(),
                mpi: "mpich".into(),
                mounts: vec![],
                env: vec![],
                cwd: "/work".into(),
                ckpt: Some(String::new()),
                ckpt_interval: None,
                rerun: false,
                restart_count: 0,
                instance: None,
                cpus: None,
                mem_mb: None,
                cpuset: None,
                site: site.clone(),
                argv: vec!["prog".into()],
            })
            .collect();
        World { tmp, args }
    }

    fn engine(&self) -> FakeEngine {
        FakeEngine::new(&self.args[0].site.runtime_dir, &self.docker_root())
    }

    fn docker_root(&self) -> PathBuf {
        self.tmp.path().join("docker")
    }

    fn layout(&self) -> Layout {
        Layout::new(&self.args[0].site.ckpt_root, "alice", &JOB.to_string())
    }

    /// Generation `g`'s manifest, authenticated.
    fn manifest(&self, g: u32) -> Manifest {
        read_json_signed(&self.layout().gen_dir(g).join("manifest.json"), &key()).expect("manifest")
    }

    /// One supervisor per rank, each with a running container `c<rank>` on `engine`.
    fn ranks(&self, engine: &FakeEngine, state: ContainerState) -> Vec<Rank<'_, FakeEngine>> {
        self.args
            .iter()
            .map(|a| {
                let id = format!("c{}", a.rank);
                match state {
                    ContainerState::Created => engine.add_created(&id),
                    _ => engine.add_running(&id),
                }
                let ranks = crate::plan::job_plan(a.job, a.ntasks, &a.site.subnet).expect("plan");
                let me = &ranks[a.rank as usize];
                let st = RankState {
                    job: a.job,
                    step: a.step,
                    rank: a.rank,
                    user: "alice".into(),
                    node: a.node.clone(),
                    container: id.clone(),
                    container_id: id.clone(),
                    hostname: me.hostname.clone(),
                    ip: me.ip.to_string(),
                    mac: me.mac.clone(),
                    image: a.image.clone(),
                    state,
                    events: vec![],
                    last_checkpoint: None,
                    dumping: None,
                    restoring: None,
                    unsaved: None,
                    restore_refused: None,
                    last_checkpoint_phases: None,
                    last_restore: None,
                    window_warning: None,
                };
                Rank {
                    a,
                    engine: engine.clone(),
                    id,
                    st,
                    layout: Some(self.layout()),
                    next_gen: 1,
                    identity_job: a.job,
                    remap_root: None,
                    ranks,
                    lease: None,
                    key: key(),
                    guarded: false,
                    compat: node_compat("fpu sse2 avx2"),
                    jobctl: std::sync::Arc::new(FakeSlurm::default()),
                    index: super::index::IndexUpdates::new(false),
                    procs: std::sync::Arc::new(FakeProcs::new(Some(0))),
                    running_since: None,
                }
            })
            .collect()
    }
}

/// Records the requeues a rank asks for.
#[derive(Default)]
struct FakeSlurm {
    requeued: std::sync::Mutex<Vec<(u32, String)>>,
}

impl crate::slurm::JobControl for FakeSlurm {
    fn exclude_and_requeue<'a>(
        &'a self,
        job: u32,
        node: &'a str,
    ) -> futures_util::future::BoxFuture<'a, crate::error::Result<Vec<String>>> {
        Box::pin(async move {
            let mut calls = self.requeued.lock().expect("lock");
            calls.push((job, node.to_string()));
            Ok(calls.iter().map(|(_, n)| n.clone()).collect())
        })
    }
}

fn node_compat(flags: &str) -> crate::compat::Compat {
    crate::compat::Compat {
        cpu_vendor: "GenuineIntel".into(),
        cpu_flags: flags.split_whitespace().map(String::from).collect(),
        page_size: 4096,
        ..Default::default()
    }
}

fn key() -> SiteKey {
    SiteKey::derive(b"unit-test site secret")
}

/// Position of the first call `op` on container `id` (panics when there is none).
fn at(calls: &[Call], op: Op, id: &str) -> usize {
    calls
        .iter()
        .position(|c| c.op == op && c.id == id)
        .unwrap_or_else(|| panic!("no {op:?} on {id} in {calls:#?}"))
}

fn has(calls: &[Call], op: Op, id: &str) -> bool {
    calls.iter().any(|c| c.op == op && c.id == id)
}

fn ids(n: u32) -> Vec<String> {
    (0..n).map(|r| format!("c{r}")).collect()
}

/// Every container runs again with its network back.
fn all_thawed(engine: &FakeEngine, n: u32) {
    for id in ids(n) {
        let c = engine.container(&id);
        assert!(!c.paused, "{id} left frozen");
        assert!(!c.net_dropped, "{id} left cut off");
    }
}

/// Checkpoint all ranks of a fresh world together; returns the world and the engine. The ranks
/// a policy makes others wait for are slowed down, so that a missing wait shows as a wrong order.
async fn checkpointed(policy: OrderPolicy, n: u32) -> (World, FakeEngine) {
    let w = World::new(policy, n, 30);
    let engine = w.engine();
    let late = Fault::Delay(Duration::from_millis(300));
    engine.plant(Op::Pause, &format!("c{}", n - 1), late);
    engine.plant(Op::Checkpoint, "c0", late);
    engine.plant(Op::Checkpoint, "c1", late);
    let mut ranks = w.ranks(&engine, ContainerState::Running);
    let res = join_all(ranks.iter_mut().map(|r| r.checkpoint(false))).await;
    for (r, res) in res.into_iter().enumerate() {
        assert_eq!(res.expect("checkpoint"), 1, "rank {r} ({policy})");
    }
    drop(ranks);
    (w, engine)
}

#[tokio::test]
async fn a_checkpoint_follows_each_ordering_policy() {
    const N: u32 = 3;
    for policy in ALL {
        let (w, engine) = checkpointed(policy, N).await;
        let calls = engine.calls();
        let dump = |r: u32| at(&calls, Op::Checkpoint, &format!("c{r}"));
        let freeze = |r: u32| at(&calls, Op::Pause, &format!("c{r}"));
        let last_dump = (0..N).map(dump).max().unwrap_or(0);
        for id in ids(N) {
            // Network cut before the freeze (CRIU thaws at the end of its dump), then dump;
            // thawed only once every rank has dumped.
            let cut = at(&calls, Op::DropTraffic(true), &id);
            let frozen = at(&calls, Op::Pause, &id);
            let dumped = at(&calls, Op::Checkpoint, &id);
            let thawed = at(&calls, Op::Unpause, &id);
            let released = at(&calls, Op::DropTraffic(false), &id);
            assert!(cut < frozen && frozen < dumped, "{policy} {id}: {calls:#?}");
            assert!(
                thawed > last_dump && released > last_dump,
                "{policy} {id}: {calls:#?}"
            );
        }
        match policy {
            // A consistent cut: nobody dumps before everybody is frozen.
            OrderPolicy::FreezeAll => {
                let last_freeze = (0..N).map(freeze).max().unwrap_or(0);
                let first_dump = (0..N).map(dump).min().unwrap_or(0);
                assert!(last_freeze < first_dump, "{policy}: {calls:#?}");
            }
            // Launcher first: the others freeze only after its dump.
            OrderPolicy::CfRl | OrderPolicy::CfRf => {
                for r in 1..N {
                    assert!(dump(0) < freeze(r), "{policy} rank {r}: {calls:#?}");
                }
            }
            // Launcher last: it freezes only after every other rank has dumped.
            OrderPolicy::ClRl | OrderPolicy::ClRf => {
                for r in 1..N {
                    assert!(dump(r) < freeze(0), "{policy} rank {r}: {calls:#?}");
                }
            }
        }
        all_thawed(&engine, N);
        let l = w.layout();
        assert_eq!(l.generations(), vec![1], "{policy}");
        assert!(!l.tmp_dir(1).exists(), "{policy}");
        let m: Manifest = read_json_signed(&l.gen_dir(1).join("manifest.json"), &key())
            .expect("authentic manifest");
        assert_eq!((m.ntasks, m.ranks.len()), (N, N as usize));
        assert_eq!(m.policy, policy.to_string());
    }
}

#[tokio::test]
async fn a_checkpoint_before_termination_leaves_the_containers_frozen_and_cut_off() {
    let w = World::new(OrderPolicy::FreezeAll, 2, 30);
    let engine = w.engine();
    let mut ranks = w.ranks(&engine, ContainerState::Running);
    let res = join_all(ranks.iter_mut().map(|r| r.checkpoint(true))).await;
    assert!(res.iter().all(Result::is_ok), "{res:?}");
    for id in ids(2) {
        let c = engine.container(&id);
        assert!(c.paused && c.net_dropped, "{id}: {c:?}");
        assert!(!has(&engine.calls(), Op::Unpause, &id));
    }
    assert_eq!(w.layout().generations(), vec![1]);
}

#[tokio::test]
async fn a_failed_dump_thaws_every_rank_and_commits_nothing() {
    for policy in ALL {
        const N: u32 = 3;
        let w = World::new(policy, N, 30);
        let engine = w.engine();
        engine.plant(Op::Checkpoint, "c1", Fault::Fail);
        let mut ranks = w.ranks(&engine, ContainerState::Running);
        let res = join_all(ranks.iter_mut().map(|r| r.checkpoint(false))).await;
        // Rank 1 names the cause; the others only stopped because of it.
        assert!(
            matches!(res[1], Err(Error::DockerApi { .. })),
            "{policy}: {:?}",
            res[1]
        );
        for r in [0, 2] {
            assert!(
                matches!(res[r], Err(Error::Peer { .. })),
                "{policy} rank {r}: {:?}",
                res[r]
            );
        }
        all_thawed(&engine, N);
        let l = w.layout();
        assert!(l.generations().is_empty(), "{policy}");
        assert!(marker(&l.tmp_dir(1), "failed", 1).exists(), "{policy}");
        for r in [0, 2] {
            assert!(!marker(&l.tmp_dir(1), "failed", r).exists(), "{policy}");
        }
        // The job's states are recorded as running again.
        for r in &ranks {
            assert_eq!(r.st.state, ContainerState::Running, "{policy}");
        }
    }
}

#[tokio::test]
async fn a_rank_stops_waiting_and_thaws_when_a_peer_fails() {
    let w = World::new(OrderPolicy::FreezeAll, 2, 30);
    let engine = w.engine();
    let mut ranks = w.ranks(&engine, ContainerState::Running);
    let tmp = w.layout().tmp_dir(1);
    // Rank 1 settles (as every rank does first), then fails while rank 0 waits for it to be
    // frozen.
    let peer = async {
        std::fs::create_dir_all(&tmp).expect("tmp dir");
        touch(&marker(&tmp, "settled", 1)).expect("settled marker");
        while !marker(&tmp, "frozen", 0).exists() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        touch(&marker(&tmp, "failed", 1)).expect("failed marker");
    };
    let (res, ()) = tokio::time::timeout(
        Duration::from_secs(10),
        futures_util::future::join(ranks[0].checkpoint(false), peer),
    )
    .await
    .expect("rank 0 stops waiting at once, not at the timeout");
    assert!(matches!(res, Err(Error::Peer { .. })), "{res:?}");
    let calls = engine.calls();
    assert!(!has(&calls, Op::Checkpoint, "c0"), "{calls:#?}");
    let c = engine.container("c0");
    assert!(!c.paused && !c.net_dropped, "{c:?}");
    assert!(!marker(&tmp, "failed", 0).exists());
    assert!(w.layout().generations().is_empty());
}

#[tokio::test]
async fn a_rank_that_sees_a_peer_go_silent_says_so_for_when_it_comes_back() {
    let w = World::new(OrderPolicy::FreezeAll, 2, 60);
    let engine = w.engine();
    let mut ranks = w.ranks(&engine, ContainerState::Running);
    let tmp = w.layout().tmp_dir(1);
    // Rank 1 settles and beats once, then its node is cut off: no marker, no beat.
    let peer = async {
        std::fs::create_dir_all(&tmp).expect("tmp dir");
        touch(&marker(&tmp, "settled", 1)).expect("settled marker");
        std::fs::write(marker(&tmp, "alive", 1), b"1").expect("heartbeat");
    };
    let (res, ()) = tokio::time::timeout(
        Duration::from_secs(40),
        futures_util::future::join(ranks[0].checkpoint(false), peer),
    )
    .await
    .expect("rank 0 gives up on the silent peer at the heartbeat timeout");
    assert!(
        matches!(res, Err(Error::Peer { gone: true, .. })),
        "{res:?}"
    );
    // The marker tells rank 1, once it is back, why nothing will be committed.
    let said = std::fs::read_to_string(marker(&tmp, "failed", 0)).expect("rank 0's failure marker");
    assert!(said.contains("rank 1 stopped responding"), "{said}");
    let c = engine.container("c0");
    assert!(!c.paused && !c.net_dropped, "{c:?}");
    assert!(w.layout().generations().is_empty());
}

#[tokio::test]
async fn a_rank_gives_up_on_a_hung_peer_at_the_timeout_and_thaws() {
    let w = World::new(OrderPolicy::FreezeAll, 2, 2);
    let engine = w.engine();
    engine.plant(Op::Checkpoint, "c1", Fault::Hang);
    let mut ranks = w.ranks(&engine, ContainerState::Running);
    let (r0, r1) = ranks.split_at_mut(1);
    let res = tokio::select! {
        res = r0[0].checkpoint(false) => res,
        _ = r1[0].checkpoint(false) => panic!("rank 1's dump hangs"),
    };
    assert!(
        res.is_err() && !matches!(res, Err(Error::Peer { .. })),
        "{res:?}"
    );
    let c = engine.container("c0");
    assert!(!c.paused && !c.net_dropped, "{c:?}");
    assert!(marker(&w.layout().tmp_dir(1), "failed", 0).exists());
    assert!(w.layout().generations().is_empty());
}

#[tokio::test]
async fn a_restore_follows_each_ordering_policy_behind_the_network_lock() {
    const N: u32 = 3;
    for policy in ALL {
        let (w, _) = checkpointed(policy, N).await;
        let m = w.manifest(1);
        let engine = w.engine();
        let late = Fault::Delay(Duration::from_millis(300));
        engine.plant(Op::StartFromCheckpoint, "c0", late);
        engine.plant(Op::StartFromCheckpoint, "c1", late);
        let mut ranks = w.ranks(&engine, ContainerState::Created);
        let root = w.docker_root();
        let res = join_all(ranks.iter_mut().map(|r| r.restore(&m, &root))).await;
        assert!(res.iter().all(Result::is_ok), "{policy}: {res:?}");
        let calls = engine.calls();
        let started = |r: u32| at(&calls, Op::StartFromCheckpoint, &format!("c{r}"));
        for r in 1..N {
            match policy {
                OrderPolicy::CfRf | OrderPolicy::ClRf => {
                    assert!(started(0) < started(r), "{policy}: {calls:#?}")
                }
                _ => assert!(started(r) < started(0), "{policy}: {calls:#?}"),
            }
        }
        // The network comes back only once every rank's sockets exist again.
        let last_start = (0..N).map(started).max().unwrap_or(0);
        for id in ids(N) {
            assert!(
                at(&calls, Op::DropTraffic(false), &id) > last_start,
                "{policy}"
            );
            let c = engine.container(&id);
            assert!(c.running && !c.net_dropped, "{policy} {id}: {c:?}");
            assert!(pointer(&root, &id).exists(), "{policy} {id}");
        }
        for r in &ranks {
            assert_eq!(r.st.state, ContainerState::Running);
            assert_eq!(r.next_gen, 2);
        }
    }
}

#[tokio::test]
async fn after_restoring_an_older_generation_numbers_go_on_past_the_newest() {
    let (w, _) = checkpointed(OrderPolicy::FreezeAll, 2).await;
    let engine = w.engine();
    let mut ranks = w.ranks(&engine, ContainerState::Running);
    for r in ranks.iter_mut() {
        r.next_gen = 2;
    }
    let res = join_all(ranks.iter_mut().map(|r| r.checkpoint(false))).await;
    assert!(res.iter().all(Result::is_ok), "{res:?}");
    drop(ranks);
    // g0002 exists but is not the one restored (skipped or refused, e.g. another job's).
    let m = w.manifest(1);
    let engine = w.engine();
    let mut ranks = w.ranks(&engine, ContainerState::Created);
    let root = w.docker_root();
    let res = join_all(ranks.iter_mut().map(|r| r.restore(&m, &root))).await;
    assert!(res.iter().all(Result::is_ok), "{res:?}");
    for r in &ranks {
        assert_eq!(r.next_gen, 3);
    }
}

/// The runtime wrapper's pointer to the images, in Docker's checkpoint directory.
fn pointer(root: &Path, id: &str) -> PathBuf {
    crate::redirect::pointer_file(&crate::redirect::docker_checkpoint_dir(root, id, "g0001"))
}

#[tokio::test]
async fn pausing_retries_and_accepts_the_state_already_there() {
    let engine = FakeEngine::default();
    engine.add_running("c");
    engine.plant(Op::Pause, "c", Fault::Fail);
    engine.set_paused("c", true).await.expect("second attempt");
    // Already paused: Docker refuses, which counts as done.
    engine.set_paused("c", true).await.expect("already paused");
    assert!(engine.container("c").paused);
    for _ in 0..6 {
        engine.plant(Op::Unpause, "c", Fault::Fail);
    }
    assert!(engine.set_paused("c", false).await.is_err());
    assert!(engine.container("c").paused);
}

#[tokio::test]
async fn a_restore_refused_on_one_rank_ends_every_rank_at_once() {
    const N: u32 = 3;
    let (w, _) = checkpointed(OrderPolicy::FreezeAll, N).await;
    let m = w.manifest(1);
    // Rank 2's images no longer match the manifest: only rank 2 can see that.
    let rank2 = w.layout().gen_dir(1).join("rank-2");
    let img = std::fs::read_dir(&rank2)
        .expect("rank-2 images")
        .flatten()
        .map(|e| e.path())
        .find(|p| p.is_file())
        .expect("an image file");
    std::fs::write(&img, b"altered").expect("alter image");
    let engine = w.engine();
    // Rank 2 is slow to start: the others are already waiting for it when it refuses.
    engine.plant(
        Op::StartFromCheckpoint,
        "c0",
        Fault::Delay(Duration::from_millis(10)),
    );
    let mut ranks = w.ranks(&engine, ContainerState::Created);
    let root = w.docker_root();
    let t0 = std::time::Instant::now();
    // The site timeout is 30 s: the others must not wait it out.
    let res = join_all(ranks.iter_mut().map(|r| r.restore(&m, &root))).await;
    assert!(
        t0.elapsed() < Duration::from_secs(10),
        "took {:?}",
        t0.elapsed()
    );
    assert!(
        matches!(&res[2], Err(e) if !matches!(e, Error::Peer { .. })),
        "{:?}",
        res[2]
    );
    // The refusing rank's record says where its restore stopped (`slurm-ckpt status`).
    let stopped = ranks[2].st.restoring.as_ref().map(|r| r.phase.as_str());
    assert_eq!(stopped, Some("verifying images"));
    for r in 0..2 {
        match &res[r] {
            Err(Error::Peer { why, .. }) => assert!(
                why.contains("rank 2 failed") && why.contains("checksum"),
                "{why}"
            ),
            other => panic!("rank {r}: {other:?}"),
        }
    }
    // Nobody's network is released into a world that will not exist.
    assert!(!engine
        .calls()
        .iter()
        .any(|c| c.op == Op::StartFromCheckpoint && c.id == "c2"));
}

#[tokio::test]
async fn a_rank_that_cannot_read_the_generation_another_chose_stops_it_at_once() {
    const N: u32 = 2;
    let (w, _) = checkpointed(OrderPolicy::FreezeAll, N).await;
    let m = w.manifest(1);
    let engine = w.engine();
    let mut ranks = w.ranks(&engine, ContainerState::Created);
    // Rank 1 read g0001's manifest differently from rank 0 (a network client's stale cache):
    // it refused it and chose nothing, while rank 0 restores it.
    let rp = crate::ckpt::RestorePoint {
        manifest: None,
        refused: vec![Error::GenerationRefused {
            generation: 1,
            reason: "manifest.json: not authenticated: its MAC does not match".into(),
        }],
        unreadable: vec![1],
    };
    super::tell_who_chose_what_i_cannot_read(&w.args[1], &w.layout(), &rp);
    let root = w.docker_root();
    let t0 = std::time::Instant::now();
    // The site timeout is 30 s: rank 0 must not wait it out.
    let res = ranks[0].restore(&m, &root).await;
    assert!(
        t0.elapsed() < Duration::from_secs(10),
        "took {:?}",
        t0.elapsed()
    );
    match res {
        Err(Error::Peer { rank: 1, why, .. }) => assert!(why.contains("MAC"), "{why}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn an_incompatible_node_requeues_the_job_without_it_and_stops_every_rank() {
    const N: u32 = 2;
    let (w, _) = checkpointed(OrderPolicy::FreezeAll, N).await;
    let m = w.manifest(1);
    assert_eq!(m.ranks[1].compat, node_compat("fpu sse2 avx2"), "recorded");
    let engine = w.engine();
    let mut ranks = w.ranks(&engine, ContainerState::Created);
    let slurm = std::sync::Arc::new(FakeSlurm::default());
    // Rank 1 is to restore on a node whose CPU lacks avx2.
    ranks[1].compat = node_compat("fpu sse2");
    for r in ranks.iter_mut() {
        r.jobctl = slurm.clone();
    }
    let root = w.docker_root();
    let t0 = std::time::Instant::now();
    let res = join_all(ranks.iter_mut().map(|r| r.restore(&m, &root))).await;
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
    match &res[1] {
        Err(e @ Error::NodeIncompatible { .. }) => {
            let text = e.to_string();
            assert!(text.contains("node n1") && text.contains("avx2"), "{text}")
        }
        other => panic!("rank 1: {other:?}"),
    }
    assert!(
        matches!(&res[0], Err(Error::Peer { why, .. }) if why.contains("rank 1 failed") && why.contains("avx2")),
        "{:?}",
        res[0]
    );
    assert_eq!(
        *slurm.requeued.lock().expect("lock"),
        [(JOB, "n1".to_string())]
    );
    let why = ranks[1].st.restore_refused.clone().unwrap_or_default();
    assert!(why.contains("requeued with node(s) n1 excluded"), "{why}");
    assert!(!engine
        .calls()
        .iter()
        .any(|c| c.op == Op::StartFromCheckpoint));
}

#[tokio::test]
async fn every_phase_is_timed_and_the_phases_add_up() {
    const N: u32 = 2;
    let (w, _) = checkpointed(OrderPolicy::FreezeAll, N).await;
    let m = w.manifest(1);
    let close = |a: f64, b: f64| (a - b).abs() <= 0.01 + 0.03 * b;
    for r in &m.ranks {
        let p = &r.phases;
        assert!(
            p.total > 0.0 && close(p.sum(), p.total),
            "rank {}: {p:?}",
            r.rank
        );
        // The planted 300 ms: rank 1 paused late (everyone waits in freeze), ranks 0 and 1 dump late.
        assert!(p.freeze >= 0.25 && p.dump >= 0.25, "rank {}: {p:?}", r.rank);
        assert!(r.held_seconds <= p.total, "rank {}", r.rank);
    }
    // The round trip covers every rank's phases and rank 0's commit.
    let longest = m.ranks.iter().map(|r| r.phases.total).fold(0.0, f64::max);
    assert!(m.checkpoint_seconds >= longest, "{m:?}");
    assert!(
        close(
            m.checkpoint_seconds,
            m.ranks[0].phases.total + m.commit_seconds
        ),
        "{} vs {} + {}",
        m.checkpoint_seconds,
        m.ranks[0].phases.total,
        m.commit_seconds
    );
    let engine = w.engine();
    let mut ranks = w.ranks(&engine, ContainerState::Created);
    let root = w.docker_root();
    let res = join_all(ranks.iter_mut().map(|r| r.restore(&m, &root))).await;
    assert!(res.iter().all(Result::is_ok), "{res:?}");
    for r in &ranks {
        let p = r.st.last_restore.clone().expect("restore phases");
        assert_eq!(p.generation, 1);
        assert!(
            r.st.restoring.is_none(),
            "a finished restore still shows a phase"
        );
        assert!(p.total > 0.0 && close(p.sum(), p.total), "{p:?}");
    }
}

#[tokio::test]
async fn on_sigterm_a_checkpoint_that_cannot_finish_is_not_started() {
    use crate::window::{job_window_path, JobWindow, OnTerminate, Windows};
    let w = World::new(OrderPolicy::FreezeAll, 1, 30);
    let engine = w.engine();
    let ranks = w.ranks(&engine, ContainerState::Running);
    let root = &w.args[0].site.ckpt_root;
    // Nothing known: dump.
    assert_eq!(ranks[0].terminate_decision(), OnTerminate::Dump);
    let jw = JobWindow {
        windows: Windows {
            partition: "lowrq".into(),
            grace: Some(60),
            kill_wait: Some(30),
        },
        ..Default::default()
    };
    let p = job_window_path(root, JOB);
    std::fs::create_dir_all(p.parent().expect("dir")).expect("mkdir");
    crate::ckpt::write_json_durable(&p, &jw).expect("window");
    // The node once took 200 s of overhead alone: 90 s window + 30 s site timeout is too short.
    crate::window::record_speed(root, "n0", 0, 0.0, 200.0).expect("speed");
    assert_eq!(
        ranks[0].terminate_decision(),
        OnTerminate::Skip {
            estimate: 200.0,
            left: 120.0
        }
    );
    // A fast node: dump.
    std::fs::remove_file(crate::window::speed_path(root, "n0")).expect("rm");
    crate::window::record_speed(root, "n0", 0, 0.0, 5.0).expect("speed");
    assert_eq!(ranks[0].terminate_decision(), OnTerminate::Dump);
}

/// Rank `rank`'s view of its container while a handshake holds a full table for the first
/// `full_polls` looks: counts the engine's holds (network cut, freeze) at each of those looks.
struct Watched {
    procs: FakeProcs,
    engine: FakeEngine,
    holds_while_full: std::sync::Mutex<Vec<usize>>,
}

impl crate::settle::ProcTable for Watched {
    fn pids(&self) -> Vec<u32> {
        let pids = self.procs.pids();
        if self
            .procs
            .full_polls
            .is_some_and(|n| self.procs.looks() <= n)
        {
            let holds = self
                .engine
                .calls()
                .iter()
                .filter(|c| matches!(c.op, Op::DropTraffic(true) | Op::Pause))
                .count();
            self.holds_while_full.lock().expect("lock").push(holds);
        }
        pids
    }
    fn pid_ns(&self, pid: u32) -> Option<String> {
        self.procs.pid_ns(pid)
    }
    fn nofile_soft(&self, pid: u32) -> Option<u64> {
        self.procs.nofile_soft(pid)
    }
    fn open_fds(&self, pid: u32, cap: u64) -> Option<u64> {
        self.procs.open_fds(pid, cap)
    }
    fn comm(&self, pid: u32) -> String {
        self.procs.comm(pid)
    }
    fn own_ns(&self) -> Option<String> {
        self.procs.own_ns()
    }
}

#[tokio::test]
async fn no_rank_holds_its_container_while_a_peers_handshake_is_under_way() {
    const N: u32 = 3;
    for policy in ALL {
        let w = World::new(policy, N, 30);
        let engine = w.engine();
        let mut ranks = w.ranks(&engine, ContainerState::Running);
        // Rank 2's sshd pre-auth child holds a full table for 3 looks (about 100 ms).
        let watched = std::sync::Arc::new(Watched {
            procs: FakeProcs::new(Some(3)),
            engine: engine.clone(),
            holds_while_full: Default::default(),
        });
        ranks[2].procs = watched.clone();
        let res = join_all(ranks.iter_mut().map(|r| r.checkpoint(false))).await;
        assert!(res.iter().all(Result::is_ok), "{policy}: {res:?}");
        let seen = watched.holds_while_full.lock().expect("lock").clone();
        assert_eq!(seen.len(), 3, "{policy}");
        assert!(
            seen.iter().all(|h| *h == 0),
            "{policy}: a rank held its container during the handshake: {seen:?} {:#?}",
            engine.calls()
        );
        assert!(watched.procs.looks() >= 4, "{policy}");
        // The wait is in the settle phase of every rank (they all waited in the barrier).
        drop(ranks);
        let m = w.manifest(1);
        for r in &m.ranks {
            assert!(
                r.phases.settle >= 0.1,
                "{policy} rank {}: {:?}",
                r.rank,
                r.phases
            );
        }
        all_thawed(&engine, N);
    }
}

#[tokio::test]
async fn the_settle_step_costs_about_one_poll_when_every_container_is_clear() {
    // The price of the all-rank "settled" barrier on every checkpoint: measured, and bounded.
    const N: u32 = 4;
    for policy in [OrderPolicy::FreezeAll, OrderPolicy::CfRl] {
        let w = World::new(policy, N, 30);
        let engine = w.engine();
        let mut ranks = w.ranks(&engine, ContainerState::Running);
        let res = join_all(ranks.iter_mut().map(|r| r.checkpoint(false))).await;
        assert!(res.iter().all(Result::is_ok), "{res:?}");
        drop(ranks);
        let m = w.manifest(1);
        let settle: Vec<f64> = m.ranks.iter().map(|r| r.phases.settle).collect();
        let worst = settle.iter().copied().fold(0.0, f64::max);
        eprintln!(
            "{policy}: settle {settle:?} s of checkpoint {:.3} s",
            m.checkpoint_seconds
        );
        assert!(worst < 0.25, "{policy}: {settle:?}");
    }
}
