//! An in-memory [`ContainerEngine`] for unit tests: it records every call (in one log shared by
//! all clones, so several ranks' supervisors in one test write one sequence), keeps each
//! container's paused and network-dropped state, and can be told to fail or hang at a given call.
//! `checkpoint_create` does what the runtime wrapper does for a real dump: it writes an image file
//! into the directory the supervisor's redirect file names.
use super::{ContainerEngine, DaemonInfo};
use crate::error::{Error, Result};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

/// One engine operation, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Start,
    Pause,
    Unpause,
    Kill,
    Remove,
    /// `drop_traffic(on)`.
    DropTraffic(bool),
    Checkpoint,
    StartFromCheckpoint,
    DaemonInfo,
    CheckImage,
    Announce,
}

/// One recorded call: the operation and the container (or image) it named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub op: Op,
    pub id: String,
}

/// What the fake does when it reaches a planted call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Fail,
    /// Reaches the daemon this much later (recorded then, and then done): a slow node, which
    /// makes a missing wait in the sequence show up as a wrong order.
    Delay(std::time::Duration),
    /// Never returns (a dump stuck in CRIU, a daemon that stopped answering).
    Hang,
}

/// A container as the fake sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Container {
    pub paused: bool,
    pub net_dropped: bool,
    pub running: bool,
}

#[derive(Default)]
struct Inner {
    calls: Vec<Call>,
    containers: HashMap<String, Container>,
    faults: Vec<(Op, String, Fault)>,
}

#[derive(Clone, Default)]
pub struct FakeEngine {
    inner: Arc<Mutex<Inner>>,
    /// The site's runtime dir, where the supervisor leaves its redirect files.
    runtime_dir: Option<PathBuf>,
    root_dir: PathBuf,
}

impl FakeEngine {
    /// `runtime_dir`: the site's, whose redirect files name where a dump goes; `root_dir`: the
    /// daemon's data directory the fake reports.
    pub fn new(runtime_dir: &std::path::Path, root_dir: &std::path::Path) -> Self {
        FakeEngine {
            inner: Arc::default(),
            runtime_dir: Some(runtime_dir.to_path_buf()),
            root_dir: root_dir.to_path_buf(),
        }
    }

    /// A running container `id`.
    pub fn add_running(&self, id: &str) {
        self.lock().containers.insert(
            id.into(),
            Container {
                running: true,
                ..Default::default()
            },
        );
    }

    /// A created, not yet started container `id` (a restore target).
    pub fn add_created(&self, id: &str) {
        self.lock()
            .containers
            .insert(id.into(), Container::default());
    }

    /// Make the next `op` on `id` fail, hang or come late (once).
    pub fn plant(&self, op: Op, id: &str, fault: Fault) {
        self.lock().faults.push((op, id.into(), fault));
    }

    pub fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    pub fn container(&self, id: &str) -> Container {
        self.lock().containers.get(id).cloned().unwrap_or_default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panicking test thread poisons the lock; the data is still what the other tests need.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Record the call, then apply a planted fault or `effect` to the container.
    async fn call(&self, op: Op, id: &str, effect: impl FnOnce(&mut Container)) -> Result<()> {
        let delay = {
            let mut g = self.lock();
            let planted = g
                .faults
                .iter()
                .position(|(o, i, f)| *o == op && i == id && matches!(f, Fault::Delay(_)));
            match planted.map(|i| g.faults.remove(i).2) {
                Some(Fault::Delay(d)) => Some(d),
                _ => None,
            }
        };
        if let Some(d) = delay {
            tokio::time::sleep(d).await;
        }
        let fault = {
            let mut g = self.lock();
            g.calls.push(Call {
                op: op.clone(),
                id: id.into(),
            });
            let planted = g.faults.iter().position(|(o, i, _)| *o == op && i == id);
            match planted {
                Some(i) => Some(g.faults.remove(i).2),
                None => {
                    if let Some(c) = g.containers.get_mut(id) {
                        effect(c);
                    }
                    None
                }
            }
        };
        // Let the other ranks' tasks run between calls, as a real daemon round trip would.
        tokio::task::yield_now().await;
        match fault {
            None => Ok(()),
            Some(Fault::Fail) => Err(Error::DockerApi {
                method: "FAKE".into(),
                path: format!("{op:?} {id}"),
                status: 500,
                message: "planted failure".into(),
            }),
            Some(Fault::Hang) => std::future::pending().await,
            Some(Fault::Delay(_)) => Ok(()),
        }
    }
}

impl ContainerEngine for FakeEngine {
    async fn start(&self, id: &str) -> Result<()> {
        self.call(Op::Start, id, |c| c.running = true).await
    }

    async fn pause(&self, id: &str) -> Result<()> {
        let already = self.container(id).paused;
        self.call(Op::Pause, id, |c| c.paused = true).await?;
        match already {
            true => Err(Error::AlreadyInState {
                container: id.into(),
                paused: true,
            }),
            false => Ok(()),
        }
    }

    async fn unpause(&self, id: &str) -> Result<()> {
        let paused = self.container(id).paused;
        self.call(Op::Unpause, id, |c| c.paused = false).await?;
        match paused {
            false => Err(Error::AlreadyInState {
                container: id.into(),
                paused: false,
            }),
            true => Ok(()),
        }
    }

    async fn kill(&self, id: &str, _signal: &str) -> Result<()> {
        self.call(Op::Kill, id, |c| c.running = false).await
    }

    async fn remove(&self, name: &str) -> Result<()> {
        self.call(Op::Remove, name, |c| c.running = false).await
    }

    async fn drop_traffic(&self, id: &str, on: bool) -> Result<()> {
        self.call(Op::DropTraffic(on), id, |c| c.net_dropped = on)
            .await
    }

    async fn checkpoint_create(&self, id: &str, _name: &str, _exit: bool) -> Result<()> {
        self.call(Op::Checkpoint, id, |_| {}).await?;
        // The runtime wrapper's part: CRIU writes where the redirect file points.
        let Some(rt) = &self.runtime_dir else {
            return Ok(());
        };
        let Ok(text) = std::fs::read_to_string(crate::redirect::redirect_file(rt, id)) else {
            return Ok(());
        };
        let Some(dir) = crate::redirect::parse(&text) else {
            return Ok(());
        };
        let img = dir.join("pages-1.img");
        std::fs::write(&img, format!("memory of {id}")).map_err(|e| Error::io(&img, e))
    }

    async fn start_from_checkpoint(&self, id: &str, _name: &str) -> Result<()> {
        // The wrapper's prestart hook restores it with its network dropped.
        self.call(Op::StartFromCheckpoint, id, |c| {
            c.running = true;
            c.net_dropped = true;
        })
        .await
    }

    async fn daemon_info(&self) -> Result<DaemonInfo> {
        self.call(Op::DaemonInfo, "", |_| {}).await?;
        Ok(DaemonInfo {
            root_dir: self.root_dir.clone(),
            remap_root: None,
            version: "fake".into(),
        })
    }

    async fn check_image(&self, image: &str) -> Result<String> {
        self.call(Op::CheckImage, image, |_| {}).await?;
        Ok(format!("sha256:{image}"))
    }

    async fn announce(&self, id: &str, _ip: &str) {
        // Best effort in the real engine too: a planted failure is only recorded.
        let _ = self.call(Op::Announce, id, |_| {}).await;
    }

    /// Every running container's init is pid 100 (`settle::fake::FakeProcs`' container); not
    /// recorded: it changes nothing.
    async fn init_pid(&self, id: &str) -> Result<Option<u32>> {
        Ok(self.container(id).running.then_some(100))
    }
}
