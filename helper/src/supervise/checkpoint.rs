//! A rank's part in checkpoints and restores: the ordering policies, freeze, dump (to the storage
//! or the node's staging directory), seal, commit (rank 0); restore in order behind the network
//! lock. The protocol is described in docs/ARCHITECTURE.md ("Checkpoint and restore").
use super::{log_path, order, save, Rank};
use crate::barrier::{
    barrier, exists_within, failure_text, marker, say, say_within, touch_within, wait_ranks,
    Heartbeat,
};
use crate::ckpt::{
    commit, copy_images, copy_summed, criu_version, fetch_verified, gen_name, prune,
    read_json_signed, seal_rank_dir, verify_rank_dir, write_json_signed, Layout, Manifest,
    RankRecord, FORMAT,
};
use crate::engine::ContainerEngine;
use crate::error::{Error, Result};
use crate::guard::{Guard, GuardArgs};
use crate::pack::{is_packed, unpack_dir, Packed, Packing, Scratch};
use crate::redirect::{self, POINTER};
use crate::state::{CheckpointOutcome, ContainerState};
use crate::storage::{bounded, bounded_async};
use crate::timing::{CkptPhases, Laps, RestorePhases};
use slurm_ckpt_site::StageDumps;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tracing::Instrument;

/// Measures a dump's images every second into the rank's bytes-written file (progress for
/// `slurm-ckpt checkpoint`); stops and removes the file when dropped.
struct Meter {
    task: tokio::task::JoinHandle<()>,
    out: PathBuf,
}

impl Meter {
    fn start(dir: PathBuf, out: PathBuf) -> Self {
        let path = out.clone();
        let task = tokio::spawn(async move {
            loop {
                // Off the runtime's only thread: a walk of a hung mount must not stall it.
                let (d, p) = (dir.clone(), path.clone());
                let sample =
                    bounded_async(METER_LOOK, "measuring dump progress in", &dir, move || {
                        match crate::progress::dir_bytes(&d) {
                            Some(b) => crate::state::write_dump_bytes(&p, b),
                            None => Ok(()),
                        }
                    });
                if let Err(e) = sample.await {
                    tracing::debug!(error = %e, "dump progress");
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        Meter { task, out }
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        // The runtime has one thread: the task is not mid-write while this runs.
        self.task.abort();
        let _ = std::fs::remove_file(&self.out);
    }
}

/// How long after a checkpoint begins every rank must have joined it (see barrier.rs).
const JOIN_GRACE: Duration = Duration::from_secs(60);
/// The slowest read of a rank's images that still counts as the storage answering: 1 MiB/s (a
/// large job's ranks share the storage's bandwidth; only a hung mount is meant).
const MIN_READ_RATE: u64 = 1 << 20;

/// How long reading `bytes` of images may take: the site timeout plus `bytes` at
/// [`MIN_READ_RATE`].
fn read_bound(t: Duration, bytes: u64) -> Duration {
    t + Duration::from_secs(bytes / MIN_READ_RATE)
}

/// Longest wait for one progress sample of a dump (storage.rs).
const METER_LOOK: Duration = Duration::from_secs(5);
/// Longest wait to leave the failure marker when a checkpoint fails: the container is thawed
/// right after, and a storage that does not take a marker now is the failure, usually.
const FAIL_MARK_LOOK: Duration = Duration::from_secs(5);

impl<E: ContainerEngine> Rank<'_, E> {
    fn dump_after(&self) -> Vec<u32> {
        order::dump_after(self.a.site.order_policy, self.a.rank, self.a.ntasks)
    }

    fn restore_after(&self) -> Vec<u32> {
        order::restore_after(self.a.site.order_policy, self.a.rank, self.a.ntasks)
    }

    /// One generation: freeze (all ranks first for freeze-all), dump straight to shared storage,
    /// seal, and (rank 0) commit. Leaves the container frozen if `stop` (the caller ends it), else
    /// thaws it. On failure the container is thawed: the job keeps running.
    pub(super) async fn checkpoint(&mut self, stop: bool) -> Result<u32> {
        let g = self.next_gen;
        self.next_gen += 1;
        let began = crate::state::now();
        let was_frozen = self.st.state == ContainerState::Frozen;
        // Should this supervisor die midway, the guard thaws the container and fails the checkpoint.
        let guard = match &self.layout {
            Some(l) if self.guarded => {
                let ga = GuardArgs {
                    socket: self.a.site.socket_for(&self.a.node),
                    node: self.a.node.clone(),
                    container: self.id.clone(),
                    rank: self.a.rank,
                    dir: l.tmp_dir(g),
                };
                match Guard::spawn(&ga, &log_path(self.a.job)) {
                    Ok(guard) => Some(guard),
                    Err(e) => {
                        tracing::warn!("checkpoint guard: {e}");
                        None
                    }
                }
            }
            _ => None,
        };
        let res = self
            .checkpoint_inner(g, stop, was_frozen)
            .instrument(tracing::info_span!("ckpt", generation = g))
            .await;
        let mut unsaid = false;
        if let Err(e) = &res {
            if publishes_failure(e) {
                // Tell the other ranks at once, with why (they wait for this rank's markers).
                if let Some(l) = &self.layout {
                    if let Err(e) = self.say_failed(l, g, e) {
                        tracing::warn!("failure marker: {e}");
                        unsaid = true;
                    }
                }
            }
        }
        // A job that goes on was thawed as soon as every rank had dumped; on failure thaw it here.
        if res.is_err() {
            if let Err(e) = self.thaw(was_frozen).await {
                tracing::error!("could not thaw {}: {e}", self.st.container);
            }
        }
        self.st.checkpoint_ended(
            g,
            began,
            match &res {
                Ok(_) => CheckpointOutcome::Complete,
                Err(e) => CheckpointOutcome::Failed {
                    reason: e.to_string(),
                },
            },
        );
        save(&mut self.st, &self.a.site.ckpt_root);
        if let Some(guard) = guard {
            guard.release().await;
        }
        if let Err(e) = &res {
            // After the record says the attempt ended: on a hung mount this waits the timeout.
            if let Some(l) = &self.layout {
                self.drop_partial_images(l, g, unsaid.then_some(e));
            }
            self.index.failed("checkpoint", Some(g), e.to_string());
        }
        self.update_index();
        res.map(|_| g)
    }

    async fn checkpoint_inner(&mut self, g: u32, stop: bool, was_frozen: bool) -> Result<()> {
        let Some(layout) = self.layout.clone() else {
            return Err(Error::CkptDisabled);
        };
        let (a, n, t) = (self.a, self.a.ntasks, self.timeout());
        let mut laps = Laps::start();
        let mut phases = CkptPhases::default();
        let tmp = layout.tmp_dir(g);
        let rank_dir = tmp.join(format!("rank-{}", a.rank));
        let (l, job, rd) = (layout.clone(), a.job, rank_dir.clone());
        // Bounded (storage.rs), like every step below that touches the checkpoint storage while
        // the container is held or the other ranks wait.
        bounded(t, "creating", &rank_dir, move || {
            l.create()?;
            // Lets `slurm-ckpt gc` tell this directory's job before its first generation exists.
            crate::gc::mark_owner(&l.job_dir, job)?;
            crate::ckpt::create_dir_all_retrying(&rd)
        })?;
        let _alive = Heartbeat::start(&tmp, a.rank);
        // The dump's size, about, for progress: measured before the container is held (a sample
        // is quick, but a held container waits for it), and never for long.
        let expected =
            tokio::time::timeout(Duration::from_secs(1), self.engine.memory_in_use(&self.id))
                .await
                .ok()
                .flatten();
        // Every rank gets the request within a second or two; one that never joins is gone.
        let absent = Some(JOIN_GRACE);
        // No rank holds its container before every rank's container can be dumped (settle.rs).
        self.settle_container(was_frozen).await;
        touch_within(&marker(&tmp, "settled", a.rank), t)?;
        barrier(&tmp, "settled", 0..n, t, absent).await?;
        phases.settle = laps.lap();
        // CRIU thaws a container when its dump is done (it drives the freezer itself). Until every
        // rank is dumped, a thawed container must not reach the others, or a peer's image would hold
        // bytes the sender's image never sent: block its network first (dropped segments are simply
        // retransmitted later by TCP).
        self.block_network(true).await?;
        let held = std::time::Instant::now();
        if order::freeze_all_first(a.site.order_policy) {
            self.freeze().await?;
            touch_within(&marker(&tmp, "frozen", a.rank), t)?;
            barrier(&tmp, "frozen", 0..n, t, absent).await?;
        }
        let after = self.dump_after();
        barrier(&tmp, "dumped", after.clone().into_iter(), t, absent).await?;
        self.freeze().await?;

        // Tell the runtime wrapper where CRIU should write: straight to the shared storage, or to
        // the node's staging directory when the images are packed (compressed, chunked) or copied
        // to a network file system later (site stage_dumps).
        let stage = if a.site.docker_data_path() || !self.stages_dumps() {
            None
        } else {
            Some(self.scratch(&format!("{}-{}", self.id, gen_name(g)))?)
        };
        let redirect = match (&stage, a.site.docker_data_path()) {
            (_, true) => None,
            (Some(st), false) => Some(self.redirect_dump(st.path())?),
            (None, false) => Some(self.redirect_dump(&rank_dir)?),
        };
        let slot = crate::slots::acquire(
            &a.site.runtime_dir.join("dump-slots"),
            a.site.dump_parallel,
            t,
        )
        .await?;
        phases.freeze = laps.lap();
        // For `slurm-ckpt checkpoint`'s progress: where the images grow, and about how large.
        self.st.dumping = Some(crate::state::Dumping {
            generation: g,
            started: crate::state::now(),
            dir: stage
                .as_ref()
                .map_or_else(|| rank_dir.clone(), |s| s.path().to_path_buf()),
            shared: stage.is_none() && !a.site.docker_data_path(),
            expected_bytes: expected,
        });
        save(&mut self.st, &a.site.ckpt_root);
        let _meter = self.st.dumping.as_ref().map(|d| {
            Meter::start(
                d.dir.clone(),
                crate::state::dump_bytes_path(&a.site.ckpt_root, a.job, a.rank),
            )
        });
        self.check_dumpable().await;
        let t0 = std::time::Instant::now();
        let res = self
            .engine
            .checkpoint_create(&self.id, &gen_name(g), false)
            .await
            .map_err(|e| with_criu_log(e, &self.id, "checkpoint"));
        drop(slot);
        if let Some(r) = redirect {
            let _ = std::fs::remove_file(r);
            let dest = stage
                .as_ref()
                .map_or_else(|| rank_dir.clone(), |s| s.path().to_path_buf());
            self.remove_containerd_leftovers(&dest);
        }
        res?;
        let dump_seconds = t0.elapsed().as_secs_f64();
        phases.dump = laps.lap();
        // The images are complete: the next rank in the order may dump.
        touch_within(&marker(&tmp, "dumped", a.rank), t)?;
        // Once every rank is dumped the cut is on disk: a job that goes on runs again now, while
        // the images are sealed, summed and committed.
        barrier(&tmp, "dumped", 0..n, t, absent).await?;
        let held_seconds = held.elapsed().as_secs_f64();
        if !stop {
            self.thaw(was_frozen).await?;
        }
        phases.wait_dumped = laps.lap();
        // The images are elsewhere when Docker's own path wrote them (the daemon's checkpoint
        // directory) or they are to be packed (the staging directory): move them to the shared
        // storage now, while the job runs.
        let t_pack = std::time::Instant::now();
        let (moved, summed) = if a.site.docker_data_path() {
            let info = self.engine.daemon_info().await?;
            let src = redirect::docker_checkpoint_dir(&info.root_dir, &self.id, &gen_name(g));
            let raw = self.pack(&src, &rank_dir, &layout);
            let _ = std::fs::remove_dir_all(&src);
            (Some(raw?), None)
        } else if let Some(st) = stage.as_ref().filter(|_| !a.site.packs()) {
            let (st, rd) = (st.path().to_path_buf(), rank_dir.clone());
            let (raw, sums) = bounded(t, "copying images to", &rank_dir, move || {
                copy_summed(&st, &rd)
            })?;
            (Some(Packed { raw, reused: 0 }), Some(sums))
        } else if let Some(st) = &stage {
            (Some(self.pack(st.path(), &rank_dir, &layout)?), None)
        } else {
            (None, None)
        };
        let pack_seconds = t_pack.elapsed().as_secs_f64();
        drop(stage);
        phases.pack = laps.lap();
        // Storage that squashes root (storage_root_uid set) lets no one chown: the images stay
        // the squashed root's, world-readable in directories only it can enter (docs/STORAGE.md).
        let owner = self
            .remap_root
            .filter(|_| self.a.site.storage_root_uid == 0);
        let rd = rank_dir.clone();
        // Rank 0 waits at most `t` for every rank's seal anyway.
        let (bytes, files) = bounded(t, "sealing", &rank_dir, move || {
            seal_rank_dir(&rd, owner, summed.as_deref())
        })?;
        phases.seal = laps.lap();
        phases.total = laps.total();
        if files.iter().all(|f| f.name == POINTER) || files.is_empty() {
            return Err(Error::NoImages { dir: rank_dir });
        }
        let me = &self.ranks[a.rank as usize];
        let order = if after.is_empty() { 0 } else { 1 };
        let rec = RankRecord {
            rank: a.rank,
            hostname: me.hostname.clone(),
            ip: me.ip.to_string(),
            mac: me.mac.clone(),
            node: a.node.clone(),
            order,
            bytes,
            files,
            dump_seconds,
            held_seconds,
            compression: a.site.compress.name(),
            encryption: match a.site.encrypt {
                true => crate::crypt::CIPHER.into(),
                false => "none".into(),
            },
            raw_bytes: moved.map_or(bytes, |m| m.raw),
            reused_bytes: moved.map_or(0, |m| m.reused),
            pack_seconds,
            compat: self.compat.clone(),
            phases: phases.clone(),
        };
        let rec_path = tmp.join(format!("rank-{}.json", a.rank));
        let (p, r, k) = (rec_path.clone(), rec.clone(), self.key.clone());
        bounded(t, "writing", &rec_path, move || {
            write_json_signed(&p, &r, &k)
        })?;
        touch_within(&marker(&tmp, "sealed", a.rank), t)?;
        tracing::info!(
            "rank {} dumped {} bytes in {:.2}s (held {:.2}s); stored {} bytes in {} ({}, moved in {:.2}s)",
            a.rank,
            rec.raw_bytes,
            dump_seconds,
            held_seconds,
            bytes,
            rank_dir.display(),
            rec.compression,
            pack_seconds,
        );

        // The node's measured speed, for the estimates of later jobs (window.rs).
        if let Err(e) = crate::window::record_speed(
            &a.site.ckpt_root,
            &a.node,
            rec.raw_bytes,
            phases.dump + phases.pack + phases.seal,
            phases.total,
        ) {
            tracing::warn!("recording the node's checkpoint speed: {e}");
        }
        self.st.last_checkpoint_phases = Some(phases);
        if a.rank == 0 {
            let t_commit = std::time::Instant::now();
            barrier(&tmp, "sealed", 0..n, t, absent).await?;
            let (d, k) = (tmp.clone(), self.key.clone());
            let recs = bounded(t, "reading the rank records in", &tmp, move || {
                (0..n)
                    .map(|r| {
                        // Authenticated: the storage is shared, the manifest will vouch for these sums.
                        read_json_signed::<RankRecord>(&d.join(format!("rank-{r}.json")), &k)
                    })
                    .collect::<Result<Vec<_>>>()
            })?;
            let info = self.engine.daemon_info().await?;
            let user = self.st.user.clone();
            let m = Manifest {
                format: FORMAT,
                job: a.job,
                step: a.step,
                generation: g,
                user,
                uid: a.uid,
                gid: a.gid,
                image: a.image.clone(),
                // Compared at restore: a generation is only valid for the exact image.
                image_id: self.engine.check_image(&a.image).await?,
                ntasks: n,
                mpi: a.mpi.clone(),
                argv: a.argv.clone(),
                // Compared at restore with the argv above: what defines this job's computation.
                instance: a.instance.as_ref().map(|i| i.to_string()),
                cwd: a.cwd.clone(),
                identity_job: Some(self.identity_job),
                policy: a.site.order_policy.to_string(),
                created: crate::state::now(),
                criu_version: criu_version(),
                engine_version: format!("docker {}", info.version),
                total_bytes: recs.iter().map(|r| r.bytes).sum(),
                ranks: recs,
                commit_seconds: t_commit.elapsed().as_secs_f64(),
                checkpoint_seconds: laps.total(),
                lease: self.lease.clone(),
            };
            let (l, mm, k) = (layout.clone(), m.clone(), self.key.clone());
            // Manifest, fsync, rename, directory fsync: a hang here leaves `.gNNNN.tmp`, never a
            // half generation (if the rename lands after all, the generation is complete).
            bounded(t, "committing", &tmp, move || commit(&l, g, &mm, &k))?;
            let (l, keep) = (layout.clone(), a.site.keep_generations as usize);
            if let Err(e) = bounded(
                t,
                "pruning old generations in",
                &layout.job_dir,
                move || Ok(prune(&l, keep, None)),
            ) {
                tracing::warn!("{e}");
            }
            tracing::info!(
                "generation {} of job {} committed ({} bytes) in {:.2}s",
                gen_name(g),
                a.job,
                m.total_bytes,
                laps.total()
            );
        } else {
            let gd = layout.gen_dir(g);
            wait_ranks(
                &tmp,
                "rank 0 to commit the generation",
                0..1,
                t,
                absent,
                |_, look| exists_within(&gd, look),
            )
            .await?;
        }
        Ok(())
    }

    /// A failed attempt's images of this rank are never restored: remove them now rather than at
    /// the next commit. On a full storage (a quota) they would keep it full, so that every later
    /// checkpoint fails too and a restore cannot even create its attempt directory. The failure
    /// `unsaid` (its marker could not be written, for lack of space) is said once they are gone.
    fn drop_partial_images(&self, l: &Layout, g: u32, unsaid: Option<&Error>) {
        let dir = l.tmp_dir(g).join(format!("rank-{}", self.a.rank));
        let gone = dir.clone();
        let removed = bounded(
            self.timeout(),
            "removing a failed attempt's images in",
            &dir,
            move || match std::fs::remove_dir_all(&gone) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(&gone, e)),
                _ => Ok(()),
            },
        );
        if let Err(e) = removed {
            tracing::warn!("{e}");
            return;
        }
        if let Some(e) = unsaid {
            if let Err(e) = self.say_failed(l, g, e) {
                tracing::warn!("failure marker, once the images were removed: {e}");
            }
        }
    }

    /// Leave this rank's failure marker, with why, in generation `g`'s attempt directory (bounded).
    fn say_failed(&self, l: &Layout, g: u32, e: &Error) -> Result<()> {
        let mark = marker(&l.tmp_dir(g), "failed", self.a.rank);
        say_within(&mark, &e.to_string(), FAIL_MARK_LOOK.min(self.timeout()))
    }

    /// Give the container its network back and, unless it was frozen before the checkpoint (a
    /// suspended job), thaw it. Tries both even if the first fails.
    async fn thaw(&mut self, was_frozen: bool) -> Result<()> {
        let net = self.block_network(false).await;
        if !was_frozen && self.st.state == ContainerState::Frozen {
            self.engine.set_paused(&self.id, false).await?;
            self.st.state = ContainerState::Running;
        }
        net
    }

    /// Drop (or stop dropping) all traffic of the container (see `Engine::drop_traffic`).
    async fn block_network(&mut self, on: bool) -> Result<()> {
        self.engine.drop_traffic(&self.id, on).await
    }

    async fn freeze(&mut self) -> Result<()> {
        if self.st.state != ContainerState::Frozen {
            self.engine.set_paused(&self.id, true).await?;
            self.st.state = ContainerState::Frozen;
        }
        Ok(())
    }

    /// A fresh directory `<stage_dir>/<job>/<node>/<name>` on the node's staging storage, removed
    /// when dropped.
    fn scratch(&self, name: &str) -> Result<Scratch> {
        let root = &self.a.site.stage_dir;
        std::fs::create_dir_all(root).map_err(|e| Error::io(root, e))?;
        // Root only: the staged images are the job's memory.
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| Error::io(root, e))?;
        let dir = crate::jobdir::job_dir(root, self.a.job, &self.a.node).join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        Ok(Scratch(dir))
    }

    /// Whether CRIU dumps into the node's staging directory: always when the images are packed,
    /// else as the site's `stage_dumps` says (auto: when the checkpoint root is on a network
    /// file system).
    fn stages_dumps(&self) -> bool {
        let site = &self.a.site;
        site.packs()
            || match site.stage_dumps {
                StageDumps::Yes => true,
                StageDumps::No => false,
                StageDumps::Auto => crate::storage::on_network_fs(&site.ckpt_root),
            }
    }

    /// Move a dump's images from `src` into the generation's rank directory, compressed and/or
    /// incremental as the site says.
    fn pack(&self, src: &Path, rank_dir: &Path, layout: &Layout) -> Result<Packed> {
        let site = &self.a.site;
        if !site.packs() {
            let raw = copy_images(src, rank_dir)?;
            return Ok(Packed { raw, reused: 0 });
        }
        // Chunks unchanged since the job's newest complete generation are linked, not written.
        let prev = layout
            .generations()
            .last()
            .map(|g| layout.gen_dir(*g).join(format!("rank-{}", self.a.rank)));
        let key = site.encrypt.then(|| self.image_key());
        let packing = Packing {
            compression: site.compress,
            incremental: site.incremental,
            prev: prev.as_deref(),
            key: key.as_ref(),
        };
        crate::pack::pack_dir(src, rank_dir, packing)
    }

    /// This job's user's key for encrypted images (whether the site encrypts now or did then).
    fn image_key(&self) -> crate::auth::ImageKey {
        self.key.image_key(self.a.uid, &self.st.user)
    }

    /// Remove what containerd left in its temporary directory for this rank's dump or restore
    /// from `images` (containerd_tmp.rs).
    fn remove_containerd_leftovers(&self, images: &Path) {
        let n = crate::containerd_tmp::remove_pointing_at(
            Path::new(crate::containerd_tmp::DEFAULT_DIR),
            images,
        );
        if n > 0 {
            tracing::debug!(removed = n, "containerd's checkpoint leftovers");
        }
    }

    /// Write the root-only redirect file that makes the runtime wrapper hand CRIU `dir` as its
    /// image directory for this container's next dump; returns the file.
    fn redirect_dump(&self, dir: &Path) -> Result<PathBuf> {
        redirect::write_redirect(&self.a.site.runtime_dir, &self.id, dir)
    }

    /// Restore this rank's container from generation `m`, in the policy's order.
    /// Restore this rank's container from generation `m`; a failure is published to the other ranks
    /// of the attempt at once.
    pub(super) async fn restore(&mut self, m: &Manifest, daemon_root: &Path) -> Result<()> {
        let res = self
            .restore_steps(m, daemon_root)
            .instrument(tracing::info_span!("restore", generation = m.generation))
            .await;
        if let Err(e @ Error::NodeIncompatible { .. }) = &res {
            // Requeued before the others learn of it: they then end the step, and a job whose
            // step failed before its requeue would end FAILED instead.
            self.requeue_elsewhere(e).await;
        }
        if let (Err(e), Some(l)) = (&res, &self.layout) {
            let attempt = restore_attempt_dir(l, m.generation, self.a.job, self.a.restart_count);
            publish_restore_failure(&attempt, self.a.rank, e);
        }
        res
    }

    /// This node cannot restore the rank: requeue the job with the node excluded, and record why
    /// for `slurm-ckpt status`.
    async fn requeue_elsewhere(&mut self, why: &Error) {
        let (job, node) = (self.a.job, self.a.node.clone());
        let done = match self.jobctl.exclude_and_requeue(job, &node).await {
            Ok(excluded) => format!("job requeued with node(s) {} excluded", excluded.join(",")),
            Err(e) => {
                tracing::error!("could not requeue job {job} away from {node}: {e}");
                format!("requeue away from {node} failed: {e}")
            }
        };
        let text = format!("{why}; {done}");
        tracing::warn!("{text}");
        if let (Some(l), Error::NodeIncompatible { generation, .. }) = (&self.layout, why) {
            let r = crate::compat::Refusal {
                at: crate::state::now(),
                instance: self.a.instance.as_ref().map(|i| i.to_string()),
                generation: *generation,
                rank: self.a.rank,
                node: node.clone(),
                reason: text.clone(),
            };
            if let Err(e) = crate::compat::record_refusal(&l.job_dir, &r) {
                tracing::warn!("recording the refusal: {e}");
            }
        }
        self.st.event(format!("restore refused: {text}"));
        self.st.state = ContainerState::Failed;
        self.st.restore_refused = Some(text);
        save(&mut self.st, &self.a.site.ckpt_root);
    }

    /// Whether this node can restore what `rec` recorded, under the site's `restore_compat`.
    fn check_compat(&self, m: &Manifest, rec: &RankRecord) -> Result<()> {
        let a = self.a;
        let mismatches = crate::compat::check_node(
            &rec.compat,
            &self.compat,
            &a.site.cpuinfo_for(&a.node),
            a.site.restore_compat,
        );
        if mismatches.is_empty() {
            return Ok(());
        }
        Err(Error::NodeIncompatible {
            node: a.node.clone(),
            rank: a.rank,
            generation: m.generation,
            taken_on: rec.node.clone(),
            mismatches,
        })
    }

    /// Say which phase of its restore this rank is in (`slurm-ckpt status`).
    fn restore_phase(&mut self, generation: u32, phase: &str, bytes: u64) {
        self.st.restoring = Some(crate::state::Restoring {
            generation,
            phase: phase.to_string(),
            since: crate::state::now(),
            bytes,
        });
        save(&mut self.st, &self.a.site.ckpt_root);
    }

    async fn restore_steps(&mut self, m: &Manifest, daemon_root: &Path) -> Result<()> {
        let (a, t) = (self.a, self.timeout());
        let mut laps = Laps::start();
        let mut phases = RestorePhases {
            generation: m.generation,
            ..Default::default()
        };
        let Some(layout) = self.layout.clone() else {
            return Err(Error::CkptDisabled);
        };
        let rec = m
            .ranks
            .iter()
            .find(|r| r.rank == a.rank)
            .ok_or(Error::RankNotInGeneration {
                generation: m.generation,
                rank: a.rank,
            })?;
        self.check_compat(m, rec)?;
        self.restore_phase(m.generation, "verifying images", rec.bytes);
        let images = layout
            .gen_dir(m.generation)
            .join(format!("rank-{}", a.rank));
        let name = gen_name(m.generation);
        let packed = is_packed(rec.files.iter().map(|f| f.name.as_str()));
        // Images as dumped, on a network checkpoint root: copied to the node while verified, so
        // that the storage is read once and CRIU reads exactly what was verified (like the dump's
        // staging, in reverse).
        let fetched = if !packed && !a.site.docker_data_path() && self.stages_dumps() {
            Some(self.scratch(&format!("{}-restore-{name}", self.id))?)
        } else {
            None
        };
        // Bounded (storage.rs), by a floor on the read rate: a hung mount must not hold this rank
        // (and, on rank 0, the job's restore decision) forever.
        let (dir, r) = (images.clone(), rec.clone());
        let to = fetched.as_ref().map(|st| st.path().to_path_buf());
        bounded_async(
            read_bound(t, rec.bytes),
            "verifying images in",
            &images,
            move || match to {
                Some(to) => fetch_verified(&dir, &to, &r).map(|_| ()),
                None => verify_rank_dir(&dir, &r),
            },
        )
        .await?;
        phases.verify = laps.lap();
        if fetched.is_some() {
            tracing::info!(
                "rank {} verified {} and copied it to the node in {:.2}s",
                a.rank,
                images.display(),
                phases.verify
            );
        }
        self.restore_phase(m.generation, "unpacking or linking images", rec.bytes);
        // Docker restores from <root>/containers/<id>/checkpoints/<name>/: put only the pointer there;
        // the runtime wrapper hands CRIU the real images on shared storage.
        let ck = redirect::docker_checkpoint_dir(daemon_root, &self.id, &name);
        std::fs::create_dir_all(&ck).map_err(|e| Error::io(&ck, e))?;
        // Packed images (compressed or chunked) are unpacked into the node's staging directory,
        // removed once CRIU has read them (when this is dropped).
        let mut _staged = None;
        let mut pointed = None;
        let t_unpack = std::time::Instant::now();
        if a.site.docker_data_path() {
            // Docker's own path: the daemon's runc reads the images from there itself, partly from
            // inside the user namespace (a 0700 directory left by our umask made CRIU fail with
            // "Unable to open tty-info.img: Permission denied").
            if packed {
                unpack_dir(&images, &ck, Some(&self.image_key()))?;
            } else {
                copy_images(&images, &ck)?;
            }
            crate::ckpt::open_to_container_root(&ck, self.remap_root)?;
            if let Some(parent) = ck.parent() {
                crate::ckpt::give(parent, self.remap_root, 0o755)?;
            }
        } else {
            let from = if packed {
                // (whatever the site's packing settings are now)
                let st = self.scratch(&format!("{}-restore-{name}", self.id))?;
                unpack_dir(&images, st.path(), Some(&self.image_key()))?;
                crate::ckpt::open_to_container_root(st.path(), self.remap_root)?;
                let p = st.path().to_path_buf();
                _staged = Some(st);
                p
            } else if let Some(st) = fetched {
                crate::ckpt::open_to_container_root(st.path(), self.remap_root)?;
                let p = st.path().to_path_buf();
                _staged = Some(st);
                p
            } else {
                images.clone()
            };
            redirect::write_pointer(&ck, &from)
                .map_err(|e| Error::io(redirect::pointer_file(&ck), e))?;
            pointed = Some(from);
        }
        if packed {
            tracing::info!(
                "rank {} unpacked {} in {:.2}s",
                a.rank,
                images.display(),
                t_unpack.elapsed().as_secs_f64()
            );
        }
        phases.unpack = laps.lap();
        self.restore_phase(m.generation, "waiting for the ranks before it", rec.bytes);
        let attempt = restore_attempt_dir(&layout, m.generation, a.job, a.restart_count);
        // Every rank makes it, on its own node.
        crate::ckpt::create_dir_all_retrying(&attempt)?;
        let _alive = Heartbeat::start(&attempt, a.rank);
        // Ranks of a restarted job start minutes apart at worst: only the timeout bounds joining.
        barrier(
            &attempt,
            "restored",
            self.restore_after().into_iter(),
            t,
            None,
        )
        .await?;
        phases.wait = laps.lap();
        self.restore_phase(m.generation, "restoring (CRIU)", rec.bytes);
        let t0 = std::time::Instant::now();
        let started = self.engine.start_from_checkpoint(&self.id, &name).await;
        if let Some(from) = &pointed {
            self.remove_containerd_leftovers(from);
        }
        if let Err(e) = started {
            return Err(with_criu_log(e, &self.id, "restore"));
        }
        // The container may now sit behind another switch port than when it was checkpointed:
        // announce its MAC (gratuitous ARP, as after a VM migration) before peers talk to it, or
        // switches keep sending its frames to the old node.
        self.engine
            .announce(&self.id, &self.ranks[a.rank as usize].ip.to_string())
            .await;
        touch_within(&marker(&attempt, "restored", a.rank), t)?;
        let restore_seconds = t0.elapsed().as_secs_f64();
        phases.criu = laps.lap();
        self.restore_phase(
            m.generation,
            "waiting for every rank, then releasing the network",
            rec.bytes,
        );
        // The runtime wrapper restored the container with its network dropped: lift that only when
        // every rank's sockets exist again, so no segment meets a missing socket (and draws a RST).
        let all = barrier(&attempt, "restored", 0..a.ntasks, t, None).await;
        if let Err(e) = self.block_network(false).await {
            tracing::error!(
                "could not unblock the network of {}: {e}",
                self.st.container
            );
        }
        all?;
        phases.network = laps.lap();
        phases.total = laps.total();
        tracing::info!(
            "rank {} restored from {} in {:.2}s ({})",
            a.rank,
            images.display(),
            restore_seconds,
            phases.line()
        );
        self.st.last_restore = Some(phases);
        self.st.restoring = None;
        self.st.state = ContainerState::Running;
        self.st
            .event(format!("restored from {name} (taken on {})", rec.node));
        // Why an earlier run of this job was moved off a node: its own records went with it.
        let instance = a.instance.as_ref().map(|i| i.to_string());
        self.st.restore_refused = crate::compat::summary(
            &crate::compat::refusals(&layout.job_dir),
            instance.as_deref(),
        );
        // Past every committed generation, not just the restored one: newer ones that were
        // skipped or refused (another job's, in a resumed directory) keep their numbers.
        self.next_gen = layout
            .generations()
            .last()
            .copied()
            .unwrap_or(0)
            .max(m.generation)
            + 1;
        Ok(())
    }
}

/// Whether a rank that failed a checkpoint says so in a failure marker. A rank that only stopped
/// because another said it failed stays silent, so the first marker names the cause. One that saw
/// a peer go silent speaks: the peer may come back (a node cut off from the storage for a while)
/// and would otherwise wait out the heartbeat timeout for a commit that never comes.
fn publishes_failure(e: &Error) -> bool {
    !matches!(e, Error::Peer { gone: false, .. })
}

/// Where the ranks of one restore attempt meet: one directory per generation, job and Slurm
/// restart (a new job that resumes an earlier job's generation starts at restart 0 again).
pub(super) fn restore_attempt_dir(
    layout: &Layout,
    generation: u32,
    job: u32,
    restart_count: u32,
) -> PathBuf {
    layout.job_dir.join(format!(
        ".restore-{}-j{job}-{restart_count}",
        gen_name(generation)
    ))
}

/// This rank cannot restore: say so in the attempt's directory, with why, so that every other rank
/// stops at once instead of waiting out the site timeout for it (barrier.rs reads the reason). A
/// peer's failure is not published again: the rank that caused it already did. Unlike a
/// checkpoint's (see [`publishes_failure`]), not even a silent peer: rank 0 would read that as a
/// failure of the generation and might set it aside.
pub(super) fn publish_restore_failure(attempt: &Path, rank: u32, e: &Error) {
    if matches!(e, Error::Peer { .. }) {
        return;
    }
    let mark = marker(attempt, "failed", rank);
    let why = failure_text(&e.to_string(), super::restore_failure::storage_refused(e));
    let (dir, m) = (attempt.to_path_buf(), mark.clone());
    // Bounded: on a hung mount the marker cannot help, and rank 0 still has to act.
    let written = bounded(FAIL_MARK_LOOK, "writing marker", attempt, move || {
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        say(&m, &why)
    });
    if let Err(w) = written {
        tracing::error!(
            rank,
            "cannot tell the other ranks that this restore failed ({}): {w}",
            mark.display()
        );
    }
}

/// CRIU's own log is deleted with the container: put its errors into the error we report. The
/// log's path, if any, is in the message Docker sent back.
fn with_criu_log(e: Error, id: &str, op: &str) -> Error {
    let named = match &e {
        Error::DockerApi { message, .. } => message
            .split_whitespace()
            .map(|w| w.trim_end_matches([':', '"', ',']))
            .find(|w| w.ends_with(".log") && w.starts_with('/'))
            .map(PathBuf::from),
        _ => None,
    };
    // Containerd deletes its copy with the failed container; the runtime wrapper keeps one.
    let kept = crate::runtime_wrapper::kept_criu_log(id, op);
    let Some((path, text)) = named
        .into_iter()
        .chain([kept])
        .find_map(|p| Some((p.display().to_string(), std::fs::read_to_string(&p).ok()?)))
    else {
        return e;
    };
    let errors: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("Error") || l.contains("Warn"))
        .take(12)
        .collect();
    tracing::error!("CRIU log {path}:\n{}", errors.join("\n"));
    Error::Criu {
        failed: Box::new(e),
        errors: errors.join("\n"),
    }
}
