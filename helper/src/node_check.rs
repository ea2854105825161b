//! `slurm-ckpt node-setup --check`: what a node lacks for rank containers, found without changing
//! anything. Parsers and rules are pure functions (unit tested); the probes (files, `criu`, the
//! Docker daemon) are thin and live in `cli/node_setup.rs`.

use serde::Serialize;

/// Oldest CRIU that restores the product's containers on current kernels (scripts/lib.sh CRIU_MIN).
pub const CRIU_MIN: (u32, u32) = (4, 2);
/// The container uids that must map to themselves (job processes run as the job's real uid).
pub const IDENTITY_IDS: std::ops::RangeInclusive<u64> = 1..=65535;

/// One thing checked on the node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub item: &'static str,
    pub ok: bool,
    /// What was found, or what is missing and how to provide it.
    pub detail: String,
}

impl Finding {
    pub fn ok(item: &'static str, detail: impl Into<String>) -> Self {
        Finding {
            item,
            ok: true,
            detail: detail.into(),
        }
    }
    pub fn missing(item: &'static str, detail: impl Into<String>) -> Self {
        Finding {
            item,
            ok: false,
            detail: detail.into(),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("daemon.json is not a JSON object: {0}")]
    DaemonJson(String),
    #[error("no 'Version:' line in `criu --version` output")]
    CriuVersion,
}

/// The daemon.json keys the product relies on.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DaemonJson {
    pub experimental: bool,
    pub live_restore: bool,
    pub userns_remap: Option<String>,
    /// `runtimes.<name>.path` for every registered runtime.
    pub runtimes: Vec<(String, String)>,
}

impl DaemonJson {
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        let v: serde_json::Value =
            serde_json::from_str(text).map_err(|e| ParseError::DaemonJson(e.to_string()))?;
        let obj = v
            .as_object()
            .ok_or_else(|| ParseError::DaemonJson("top level is not an object".into()))?;
        let runtimes = obj
            .get("runtimes")
            .and_then(|r| r.as_object())
            .map(|r| {
                r.iter()
                    .filter_map(|(name, rt)| {
                        let path = rt.get("path")?.as_str()?;
                        Some((name.clone(), path.to_string()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(DaemonJson {
            experimental: obj.get("experimental").and_then(|e| e.as_bool()) == Some(true),
            live_restore: obj.get("live-restore").and_then(|e| e.as_bool()) == Some(true),
            userns_remap: obj
                .get("userns-remap")
                .and_then(|u| u.as_str())
                .map(str::to_string),
            runtimes,
        })
    }
}

/// The user dockerd remaps to for a `userns-remap` value (`user`, `user:group`, or `default`).
pub fn remap_user(value: &str) -> &str {
    let user = value.split(':').next().unwrap_or(value);
    if user == "default" {
        "dockremap"
    } else {
        user
    }
}

/// `(start, count)` ranges of `user` in an /etc/subuid or /etc/subgid text, in file order (the
/// order dockerd assigns container ids in).
pub fn id_ranges(text: &str, user: &str) -> Vec<(u64, u64)> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.trim().split(':');
            let (name, start, count) = (f.next()?, f.next()?, f.next()?);
            if name != user {
                return None;
            }
            Some((start.parse().ok()?, count.parse().ok()?))
        })
        .collect()
}

/// Host id of container id `cid` under `ranges` (consecutive container ids per range).
fn host_id(ranges: &[(u64, u64)], cid: u64) -> Option<u64> {
    let mut base = 0u64;
    for &(start, count) in ranges {
        if cid < base + count {
            return Some(start + (cid - base));
        }
        base += count;
    }
    None
}

/// The product's id map: container root to an unprivileged host id, container ids 1..=65535 to
/// the same host ids (docs/ARCHITECTURE.md, "User namespaces"). `Err` says what is wrong.
pub fn check_id_map(ranges: &[(u64, u64)]) -> Result<(), String> {
    check_id_map_upto(ranges, *IDENTITY_IDS.end())
}

/// `check_id_map` for a site whose job ids go up to `max_id` (LDAP/AD ids above 65535): ids
/// 1..=max_id must map to themselves.
pub fn check_id_map_upto(ranges: &[(u64, u64)], max_id: u64) -> Result<(), String> {
    match host_id(ranges, 0) {
        None => return Err("no range at all".into()),
        Some(0) => return Err("container root maps to host root".into()),
        Some(_) => {}
    }
    for cid in [1, max_id] {
        if host_id(ranges, cid) != Some(cid) {
            return Err(format!(
                "container id {cid} must map to host id {cid} (ids 1..{max_id} map to themselves)"
            ));
        }
    }
    // Identity at both ends is identity throughout only if one range covers them.
    let covering = ranges.iter().any(|&(s, c)| s <= 1 && s + c > max_id);
    if covering {
        Ok(())
    } else {
        Err(format!(
            "ids 1..{max_id} are not one range mapping to themselves"
        ))
    }
}

/// The remap user of a daemon whose container root is host id `root`: the one user whose first
/// range starts there. dockerd does not say which user it remaps to; this is the user whose ranges
/// produce the root id it does report (its data root's `<uid>.<gid>` suffix). None when no user or
/// several do (useradd gives ordinary users ranges from 100000 too): then nobody can tell.
pub fn remap_user_with_root(text: &str, root: u64) -> Option<String> {
    let mut seen: Vec<&str> = Vec::new();
    let mut found: Vec<&str> = Vec::new();
    for l in text.lines() {
        let mut f = l.trim().split(':');
        let (Some(name), Some(start)) = (f.next(), f.next()) else {
            continue;
        };
        if seen.contains(&name) {
            continue;
        }
        seen.push(name);
        if start.parse::<u64>().ok() == Some(root) {
            found.push(name);
        }
    }
    match found.as_slice() {
        [one] => Some(one.to_string()),
        _ => None,
    }
}

/// Whether the job's id `id` maps to the same host id under `ranges` (job processes must run as
/// the job's real ids: files on shared storage get the right owner).
pub fn maps_to_itself(ranges: &[(u64, u64)], id: u32) -> bool {
    host_id(ranges, u64::from(id)) == Some(u64::from(id))
}

/// `ranges` as container ids → host ids, for messages: `0 → 100000, 1..65535 → 1..65535`.
pub fn describe_id_map(ranges: &[(u64, u64)]) -> String {
    let mut base = 0u64;
    let mut parts = Vec::new();
    for &(start, count) in ranges {
        let span = |a: u64, n: u64| match n {
            1 => a.to_string(),
            _ => format!("{a}..{}", a + n - 1),
        };
        if count > 0 {
            parts.push(format!("{} → {}", span(base, count), span(start, count)));
        }
        base += count;
    }
    if parts.is_empty() {
        "nothing".into()
    } else {
        parts.join(", ")
    }
}

/// The lines an admin adds to /etc/subuid and /etc/subgid for `user` (first line first).
pub fn id_map_lines(user: &str) -> String {
    id_map_lines_upto(user, DEFAULT_ROOT_ID, *IDENTITY_IDS.end())
}

/// Host id of the container root when nothing else claims it (scripts/vcluster uses the same).
pub const DEFAULT_ROOT_ID: u64 = 100000;

/// `user`'s lines for container root → host id `root` and ids 1..=max_id → themselves.
pub fn id_map_lines_upto(user: &str, root: u64, max_id: u64) -> String {
    format!("{user}:{root}:1\n{user}:1:{max_id}\n")
}

/// `(major, minor)` from `criu --version` output (`Version: 4.2.1`).
pub fn criu_version(output: &str) -> Result<(u32, u32), ParseError> {
    let v = output
        .lines()
        .find_map(|l| l.trim().strip_prefix("Version:"))
        .ok_or(ParseError::CriuVersion)?
        .trim();
    let mut parts = v.split('.').map(|p| p.parse::<u32>());
    match (parts.next(), parts.next()) {
        (Some(Ok(a)), Some(Ok(b))) => Ok((a, b)),
        (Some(Ok(a)), None) => Ok((a, 0)),
        _ => Err(ParseError::CriuVersion),
    }
}

/// What /etc/criu/runc.conf lacks of what the product needs (empty = nothing).
pub fn criu_conf_missing(text: &str) -> Vec<&'static str> {
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let mut missing = Vec::new();
    if !lines.contains(&"tcp-established") {
        missing.push("tcp-established");
    }
    if !lines.iter().any(|l| l.starts_with("ghost-limit ")) {
        missing.push("ghost-limit SIZE");
    }
    missing
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn daemon_json() {
        let d = DaemonJson::parse(
            r#"{"experimental": true, "userns-remap": "slurmckpt",
                "runtimes": {"slurm-ckpt": {"path": "/usr/bin/slurm-ckpt-runc"}, "odd": {}}}"#,
        )
        .unwrap();
        assert!(d.experimental);
        assert_eq!(d.userns_remap.as_deref(), Some("slurmckpt"));
        assert_eq!(
            d.runtimes,
            vec![("slurm-ckpt".into(), "/usr/bin/slurm-ckpt-runc".into())]
        );
        assert_eq!(DaemonJson::parse("{}").unwrap(), DaemonJson::default());
        assert!(DaemonJson::parse("[1]").is_err());
        assert!(DaemonJson::parse("{").is_err());
    }

    #[test]
    fn remap_user_names() {
        assert_eq!(remap_user("slurmckpt"), "slurmckpt");
        assert_eq!(remap_user("slurmckpt:slurmckpt"), "slurmckpt");
        assert_eq!(remap_user("default"), "dockremap");
    }

    #[test]
    fn job_ids_must_map_to_themselves() {
        let text = "alice:300000:65536\nslurmckpt:100000:1\nslurmckpt:1:65535\n";
        assert_eq!(
            remap_user_with_root(text, 100000).as_deref(),
            Some("slurmckpt")
        );
        // Only a user's first range names its root.
        assert_eq!(remap_user_with_root(text, 1), None);
        assert_eq!(remap_user_with_root(text, 300000).as_deref(), Some("alice"));
        // useradd's own range for a user starting at the same id: ambiguous, no guess.
        let both = "ckptuser:100000:65536\nslurmckpt:100000:1\nslurmckpt:1:65535\n";
        assert_eq!(remap_user_with_root(both, 100000), None);
        let r = id_ranges(text, "slurmckpt");
        assert!(maps_to_itself(&r, 1000));
        assert!(maps_to_itself(&r, 65535));
        assert!(!maps_to_itself(&r, 65536));
        assert!(!maps_to_itself(&r, 200001));
        assert_eq!(describe_id_map(&r), "0 → 100000, 1..65535 → 1..65535");
        // The wide map proposed for sites with large (LDAP/AD) ids.
        let wide = [(2147483647, 1), (1, 2147483646)];
        assert!(maps_to_itself(&wide, 200001) && maps_to_itself(&wide, 2000200000));
        assert_eq!(check_id_map(&wide), Ok(()));
        // Docker's default remap maps ids, but not to themselves.
        assert!(!maps_to_itself(&[(100000, 65536)], 1000));
        assert_eq!(describe_id_map(&[]), "nothing");
    }

    #[test]
    fn subuid_ranges_and_rule() {
        let text = "other:200000:65536\nslurmckpt:100000:1\n# x\nslurmckpt:1:65535\nbad line\n";
        let r = id_ranges(text, "slurmckpt");
        assert_eq!(r, vec![(100000, 1), (1, 65535)]);
        assert_eq!(check_id_map(&r), Ok(()));
        assert_eq!(id_ranges(&id_map_lines("u"), "u"), r);
        // Wrong order: container root would be host uid 1.
        assert!(check_id_map(&[(1, 65535), (100000, 1)]).is_err());
        // Docker's default remap: nothing maps to itself.
        assert!(check_id_map(&[(100000, 65536)]).is_err());
        assert!(check_id_map(&[]).is_err());
        assert!(check_id_map(&[(0, 65536)]).is_err());
    }

    #[test]
    fn criu() {
        assert_eq!(criu_version("Version: 4.2.1\nGitID: x\n"), Ok((4, 2)));
        assert_eq!(criu_version("Version: 3.17\n"), Ok((3, 17)));
        assert!(criu_version("criu: not found").is_err());
        assert!(criu_conf_missing("tcp-established\nghost-limit 1G\n").is_empty());
        assert_eq!(
            criu_conf_missing("ghost-limit 1G\n"),
            vec!["tcp-established"]
        );
        assert_eq!(
            criu_conf_missing(""),
            vec!["tcp-established", "ghost-limit SIZE"]
        );
    }
}
