//! The paths a job names (mount sources, its working directory), checked with the job user's own
//! credentials before root's Docker daemon mounts them. The rules are
//! `slurm_ckpt_site::user_paths`; here they run in a child process (`slurm-ckpt check-paths`) that
//! drops to the job's uid, gid and supplementary groups, so the kernel decides exactly as it would
//! for the user. The supervisor uses the resolved paths it returns. See docs/SECURITY.md.
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use slurm_ckpt_site::user_paths::{check_not_reserved, resolve_as_caller, Access};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The child must answer within this: a hung network file system must not hang the job start.
const CHECK_TIMEOUT: Duration = Duration::from_secs(60);

/// A path the job named and what the container will do with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// What the user would call it in an error ("mount /a:/b", "working directory").
    pub what: String,
    pub path: String,
    pub access: Access,
}

impl Request {
    /// `ro:/path` or `rw:/path`, as passed to the child.
    fn arg(&self) -> String {
        format!("{}:{}", self.access.as_str(), self.path)
    }
}

/// The child's answer for one path.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "lowercase")]
pub enum Answer {
    Ok(PathBuf),
    Refused(String),
}

/// The job user's credentials.
#[derive(Debug, Clone)]
pub struct Creds {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

impl Creds {
    /// The user's supplementary groups as the system knows them (initgroups semantics).
    fn groups(&self) -> Result<Vec<u32>> {
        let name =
            std::ffi::CString::new(self.name.as_str()).map_err(|_| Error::NoUser(self.uid))?;
        nix::unistd::getgrouplist(&name, nix::unistd::Gid::from_raw(self.gid))
            .map(|g| g.into_iter().map(|g| g.as_raw()).collect())
            .map_err(|e| Error::io("getgrouplist", e.into()))
    }
}

/// Resolve every request as the user (in a child) and refuse what lands in a reserved directory.
/// Returns the resolved paths, in order. The first refusal is the error.
pub async fn resolve_for_user(
    creds: &Creds,
    requests: &[Request],
    reserved: &[(PathBuf, &'static str)],
) -> Result<Vec<PathBuf>> {
    if requests.is_empty() {
        return Ok(vec![]);
    }
    let groups = creds.groups()?;
    let exe = std::env::current_exe().map_err(|e| Error::io("/proc/self/exe", e))?;
    let mut cmd = tokio::process::Command::new(&exe);
    cmd.arg("check-paths")
        .arg(format!("--uid={}", creds.uid))
        .arg(format!("--gid={}", creds.gid))
        .arg(format!(
            "--groups={}",
            groups
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(",")
        ))
        .arg("--")
        .args(requests.iter().map(Request::arg))
        .env_clear()
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(CHECK_TIMEOUT, cmd.output())
        .await
        .map_err(|_| Error::PathCheck(format!("no answer within {CHECK_TIMEOUT:?}")))?
        .map_err(|e| Error::io(&exe, e))?;
    if !out.status.success() {
        return Err(Error::PathCheck(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ));
    }
    let answers: Vec<Answer> = serde_json::from_slice(&out.stdout)
        .map_err(|e| Error::PathCheck(format!("unreadable answer: {e}")))?;
    judge(requests, answers, reserved)
}

/// Pure part: match answers to requests and apply the reserved-directory rule.
pub fn judge(
    requests: &[Request],
    answers: Vec<Answer>,
    reserved: &[(PathBuf, &'static str)],
) -> Result<Vec<PathBuf>> {
    if answers.len() != requests.len() {
        return Err(Error::PathCheck(format!(
            "{} answers for {} paths",
            answers.len(),
            requests.len()
        )));
    }
    requests
        .iter()
        .zip(answers)
        .map(|(req, ans)| match ans {
            Answer::Refused(reason) => Err(Error::PathRefused {
                what: req.what.clone(),
                reason,
            }),
            Answer::Ok(resolved) => {
                check_not_reserved(&req.path, &resolved, reserved).map_err(|r| {
                    Error::PathRefused {
                        what: req.what.clone(),
                        reason: r.to_string(),
                    }
                })?;
                Ok(resolved)
            }
        })
        .collect()
}

/// The child (`slurm-ckpt check-paths`): drop to the user for good, then resolve each
/// `ro:PATH`/`rw:PATH`. Runs as a fresh single-threaded process, so dropping privileges here
/// cannot leave another thread with root's.
pub fn child(uid: u32, gid: u32, groups: &[u32], specs: &[String]) -> Result<Vec<Answer>> {
    drop_to(uid, gid, groups)?;
    specs
        .iter()
        .map(|s| {
            let (access, path) = s
                .split_once(':')
                .and_then(|(a, p)| Some((Access::parse(a)?, p)))
                .ok_or_else(|| Error::PathCheck(format!("bad path spec '{s}'")))?;
            Ok(match resolve_as_caller(path, access) {
                Ok(p) => Answer::Ok(p),
                Err(r) => Answer::Refused(r.to_string()),
            })
        })
        .collect()
}

/// Become the user for good: their groups, gid and uid. For a fresh single-threaded child
/// process only (`check-paths`, `write-index`): another thread would keep root's credentials.
pub fn drop_to(uid: u32, gid: u32, groups: &[u32]) -> Result<()> {
    use nix::unistd::{setgid, setgroups, setuid, Gid, Uid};
    if uid == 0 {
        return Err(Error::DropPrivileges("refusing to run as root".into()));
    }
    let gids: Vec<Gid> = groups.iter().copied().map(Gid::from_raw).collect();
    let drop_err = |what: &str, e: nix::Error| Error::DropPrivileges(format!("{what}: {e}"));
    setgroups(&gids).map_err(|e| drop_err("setgroups", e))?;
    setgid(Gid::from_raw(gid)).map_err(|e| drop_err("setgid", e))?;
    setuid(Uid::from_raw(uid)).map_err(|e| drop_err("setuid", e))?;
    // setuid from root clears the saved uid too: make sure root cannot be regained.
    if setuid(Uid::from_raw(0)).is_ok() {
        return Err(Error::DropPrivileges("could not drop root".into()));
    }
    Ok(())
}

/// A node name as it may appear in socket templates and directory names (one rule for the
/// plugin and the helper).
pub use slurm_ckpt_site::valid_node_name;

/// Directories a job may never mount: the site's and the daemons' (`reserved_roots`), plus this
/// node's Docker data root and socket (a site may have moved them).
pub fn reserved_for_node(
    site: &crate::site::SiteConfig,
    docker_root: &Path,
) -> Vec<(PathBuf, &'static str)> {
    let mut roots = slurm_ckpt_site::user_paths::reserved_roots(site);
    roots.push((docker_root.to_path_buf(), "Docker daemon's data root"));
    // With userns-remap the root is `<data-root>/<uid>.<gid>`: the whole data root is Docker's.
    let remapped = docker_root
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.split_once('.'))
        .is_some_and(|(u, g)| u.parse::<u32>().is_ok() && g.parse::<u32>().is_ok());
    if let Some(parent) = docker_root.parent().filter(|_| remapped) {
        roots.push((parent.to_path_buf(), "Docker daemon's data root"));
    }
    let socket = site.docker_socket.trim_start_matches("unix://");
    if let Some(dir) = Path::new(socket).parent().filter(|d| d != &Path::new("/")) {
        if dir != Path::new("/run") && dir != Path::new("/var/run") {
            roots.push((dir.to_path_buf(), "Docker daemon's socket directory"));
        }
    }
    roots
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(path: &str, access: Access) -> Request {
        Request {
            what: format!("mount {path}:/x"),
            path: path.into(),
            access,
        }
    }

    #[test]
    fn refusals_name_the_mount_and_reason() {
        let reserved = vec![(PathBuf::from("/ckpt"), "site's checkpoint root")];
        let reqs = [req("/data", Access::Read), req("/l", Access::Read)];
        let ok = judge(
            &reqs,
            vec![
                Answer::Ok("/data".into()),
                Answer::Ok("/scratch/real".into()),
            ],
            &reserved,
        )
        .unwrap();
        assert_eq!(
            ok,
            vec![PathBuf::from("/data"), PathBuf::from("/scratch/real")]
        );
        // A symlink the user owns that points into the checkpoint root is judged by its target.
        let e = judge(
            &reqs,
            vec![Answer::Ok("/data".into()), Answer::Ok("/ckpt/bob/1".into())],
            &reserved,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("mount /l:/x") && e.contains("/ckpt/bob/1"),
            "{e}"
        );
        let e = judge(
            &reqs[..1],
            vec![Answer::Refused("no such thing".into())],
            &reserved,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("mount /data:/x") && e.contains("no such thing"),
            "{e}"
        );
        assert!(judge(&reqs, vec![], &reserved).is_err());
    }

    #[test]
    fn answers_round_trip_as_json() {
        let a = vec![Answer::Ok("/a".into()), Answer::Refused("why".into())];
        let s = serde_json::to_string(&a).unwrap();
        assert_eq!(serde_json::from_str::<Vec<Answer>>(&s).unwrap(), a);
    }

    #[test]
    fn node_names() {
        for ok in ["node1", "cn-001.cluster", "a_b"] {
            assert!(valid_node_name(ok), "{ok}");
        }
        for bad in [
            "",
            "-x",
            ".x",
            "a/b",
            "../x",
            "n 1",
            "n;rm",
            &"x".repeat(65),
        ] {
            assert!(!valid_node_name(bad), "{bad}");
        }
    }

    #[test]
    fn child_refuses_root() {
        assert!(child(0, 0, &[], &[]).is_err());
    }
}
