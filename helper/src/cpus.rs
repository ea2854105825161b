//! The CPUs of a rank container: its cpuset is the task's CPUs as the plugin computed them from
//! Slurm's allocation (checked here: the helper runs as root and trusts no argument), and a CFS
//! quota only where the site asks for one (`cpu_quota=yes`).
use crate::error::{Error, Result};
use slurm_ckpt_site::CpuList;
use std::path::Path;

/// The node's online CPUs.
pub const ONLINE_CPUS: &str = "/sys/devices/system/cpu/online";

/// The CPU list in `path` (a sysfs list file).
pub fn read_list(path: &Path) -> Result<CpuList> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    Ok(CpuList::parse(&text)?)
}

/// `cpus` in Docker's `cpuset_cpus` form, if every one is online (Docker's own refusal does not
/// say which CPUs the node has).
pub fn cpuset(cpus: &CpuList, online: &CpuList) -> Result<String> {
    if !cpus.is_subset_of(online) {
        return Err(Error::CpusOffline {
            cpus: cpus.to_string(),
            online: online.to_string(),
        });
    }
    Ok(cpus.to_string())
}

/// The rank container's `cpuset_cpus` (None: not confined), logged either way.
pub fn container_cpuset(rank: u32, cpus: Option<&CpuList>) -> Result<Option<String>> {
    let Some(cpus) = cpus else {
        tracing::info!("rank {rank}: no cpuset (no CPU allocation from the plugin)");
        return Ok(None);
    };
    let online = read_list(Path::new(ONLINE_CPUS))?;
    let set = cpuset(cpus, &online)?;
    tracing::info!("rank {rank}: cpuset {set} (node's online CPUs {online})");
    Ok(Some(set))
}

/// The container's CFS quota in Docker's nano-CPUs: the task's CPU count, only if the site asks.
pub fn nano_cpus(cpus_per_task: Option<u32>, site_quota: bool) -> Option<i64> {
    cpus_per_task
        .filter(|_| site_quota)
        .map(|c| i64::from(c) * 1_000_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(s: &str) -> CpuList {
        CpuList::parse(s).unwrap()
    }

    #[test]
    fn cpuset_must_be_online() {
        assert_eq!(cpuset(&l("1"), &l("0-1")).unwrap(), "1");
        assert_eq!(cpuset(&l("0,2-3"), &l("0-7")).unwrap(), "0,2-3");
        let err = cpuset(&l("2-3"), &l("0-1")).unwrap_err().to_string();
        assert!(err.contains("2-3") && err.contains("0-1"), "{err}");
    }

    #[test]
    fn reads_sysfs_lists() {
        let online = read_list(Path::new(ONLINE_CPUS)).unwrap();
        assert!(!online.is_empty());
        assert!(read_list(Path::new("/nonexistent/online")).is_err());
    }

    #[test]
    fn quota_only_where_the_site_asks() {
        assert_eq!(nano_cpus(Some(2), true), Some(2_000_000_000));
        assert_eq!(nano_cpus(Some(2), false), None);
        assert_eq!(nano_cpus(None, true), None);
    }
}
