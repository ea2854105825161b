//! What a restore depends on, recorded with every rank of a generation and checked on the node a
//! rank is about to restore on: an incompatible node is refused before CRIU is tried (a late CRIU
//! failure, or worse a process that dies of SIGILL on an instruction the new CPU lacks).
//!
//! The CPU check follows CRIU's `--cpu-cap=cpu` semantics: the restoring CPU must be of the same
//! vendor and offer every feature flag the dumping CPU offered (the processes may use any of them).
use crate::site::RestoreCompat;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// One node's side of a restore: recorded per rank at checkpoint time, probed at restore time.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Compat {
    /// `vendor_id` of /proc/cpuinfo (x86), `CPU implementer` (Arm); empty when unreadable.
    #[serde(default)]
    pub cpu_vendor: String,
    #[serde(default)]
    pub cpu_model: String,
    /// `flags` (x86) or `Features` (Arm) of the first processor, sorted.
    #[serde(default)]
    pub cpu_flags: Vec<String>,
    #[serde(default)]
    pub kernel: String,
    #[serde(default)]
    pub criu: String,
    #[serde(default)]
    pub runc: String,
    #[serde(default)]
    pub docker: String,
    #[serde(default)]
    pub page_size: u64,
}

/// The CPU part of /proc/cpuinfo (its first processor: the kernel shows the features every CPU
/// has in common; a node with mixed CPUs is not a case Slurm supports either).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CpuInfo {
    pub vendor: String,
    pub model: String,
    pub flags: Vec<String>,
}

pub fn parse_cpuinfo(text: &str) -> CpuInfo {
    let mut info = CpuInfo::default();
    // The first block only: blocks are separated by an empty line.
    for line in text.lines().take_while(|l| !l.trim().is_empty()) {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let v = v.trim();
        match k.trim() {
            "vendor_id" | "CPU implementer" if info.vendor.is_empty() => info.vendor = v.into(),
            "model name" | "CPU part" if info.model.is_empty() => info.model = v.into(),
            "flags" | "Features" => {
                let set: BTreeSet<&str> = v.split_whitespace().collect();
                info.flags = set.into_iter().map(String::from).collect();
            }
            _ => {}
        }
    }
    info
}

/// /proc/cpuinfo flags that say nothing about the instructions a process may use: the kernel's own
/// mitigations and synthetic bits, virtualization, power and timer features, resource monitoring.
/// They differ between nodes with the same CPU (boot options, kernel version, bare metal or VM), so
/// requiring them would refuse good nodes.
#[rustfmt::skip]
const NOT_FOR_PROCESSES: &[&str] = &[
    "pti", "kaiser", "ibpb", "ibrs", "ibrs_enhanced", "stibp", "ssbd", "retpoline",
    "retpoline_amd", "rsb_ctxsw", "use_ibpb", "use_ibrs_fw", "flush_l1d", "md_clear", "spec_ctrl",
    "intel_stibp", "arch_capabilities", "amd_ssbd", "virt_ssbd", "amd_stibp", "hypervisor", "vmx",
    "svm", "tpr_shadow", "vnmi", "flexpriority", "ept", "vpid", "ept_ad", "constant_tsc",
    "nonstop_tsc", "tsc_known_freq", "tsc_reliable", "tsc_deadline_timer", "tsc_adjust",
    "cpuid_fault", "rep_good", "nopl", "xtopology", "arch_perfmon", "pebs", "bts", "epb", "ida",
    "arat", "pln", "pts", "dtherm", "hwp", "hwp_notify", "hwp_act_window", "hwp_epp",
    "hwp_pkg_req", "intel_ppin", "cat_l3", "cdp_l3", "cat_l2", "cdp_l2", "mba", "cqm", "cqm_llc",
    "cqm_occup_llc", "cqm_mbm_total", "cqm_mbm_local", "dca", "ds_cpl", "dtes64", "tm", "tm2",
    "est", "smx", "acpi", "ht", "pbe", "monitor", "xtpr", "pdcm", "aperfmperf", "amd_dcm", "cpb",
    "hw_pstate", "proc_feedback", "overflow_recov", "succor", "smca", "decodeassists",
    "flushbyasid", "lbrv", "nrip_save", "pausefilter", "pfthreshold", "svm_lock", "tsc_scale",
    "vmcb_clean", "avic", "v_vmsave_vmload", "vgif", "v_spec_ctrl", "npt", "perfctr_core",
    "perfctr_nb", "perfctr_llc", "ibs", "skinit", "wdt", "topoext", "extd_apicid",
    "nonstop_tsc_s3", "user_shstk",
];

/// Why a node cannot restore a rank, one reason each.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Mismatch {
    /// The node's CPU description could not be read (`cpuinfo_path`).
    CpuUnknown {
        path: String,
    },
    CpuVendor {
        recorded: String,
        node: String,
    },
    /// CPU features the processes may use that this node's CPU lacks.
    CpuFlags {
        missing: Vec<String>,
    },
    PageSize {
        recorded: u64,
        node: u64,
    },
    /// `strict`: a software version differs (kernel, criu, runc, docker).
    Version {
        what: String,
        recorded: String,
        node: String,
    },
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Mismatch::CpuUnknown { path } => {
                write!(f, "its CPU description ({path}) is unreadable")
            }
            Mismatch::CpuVendor { recorded, node } => {
                write!(
                    f,
                    "CPU vendor {node}, the checkpoint was taken on {recorded}"
                )
            }
            Mismatch::CpuFlags { missing } => {
                let shown: Vec<&str> = missing.iter().take(12).map(String::as_str).collect();
                let more = missing.len().saturating_sub(shown.len());
                write!(f, "its CPU lacks flag(s) {}", shown.join(" "))?;
                if more > 0 {
                    write!(f, " and {more} more")?;
                }
                Ok(())
            }
            Mismatch::PageSize { recorded, node } => {
                write!(f, "page size {node}, the checkpoint has {recorded}")
            }
            Mismatch::Version {
                what,
                recorded,
                node,
            } => write!(f, "{what} {node}, the checkpoint was taken with {recorded}"),
        }
    }
}

/// `list` of mismatches as one phrase.
pub fn describe(list: &[Mismatch]) -> String {
    list.iter()
        .map(Mismatch::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// What keeps `node` from restoring what was recorded as `recorded`, under `mode`. Empty: it may.
/// A record without CPU information (an older helper's, or a node whose cpuinfo was unreadable at
/// checkpoint time) asks for nothing of the CPU.
pub fn compare(recorded: &Compat, node: &Compat, mode: RestoreCompat) -> Vec<Mismatch> {
    let mut out = Vec::new();
    if mode == RestoreCompat::Off {
        return out;
    }
    if !recorded.cpu_vendor.is_empty() && recorded.cpu_vendor != node.cpu_vendor {
        out.push(Mismatch::CpuVendor {
            recorded: recorded.cpu_vendor.clone(),
            node: node.cpu_vendor.clone(),
        });
    }
    let have: BTreeSet<&str> = node.cpu_flags.iter().map(String::as_str).collect();
    let missing: Vec<String> = recorded
        .cpu_flags
        .iter()
        .filter(|f| !have.contains(f.as_str()) && !NOT_FOR_PROCESSES.contains(&f.as_str()))
        .cloned()
        .collect();
    if !missing.is_empty() {
        out.push(Mismatch::CpuFlags { missing });
    }
    if recorded.page_size != 0 && recorded.page_size != node.page_size {
        out.push(Mismatch::PageSize {
            recorded: recorded.page_size,
            node: node.page_size,
        });
    }
    if mode == RestoreCompat::Strict {
        for (what, r, n) in [
            ("kernel", &recorded.kernel, &node.kernel),
            ("criu", &recorded.criu, &node.criu),
            ("runc", &recorded.runc, &node.runc),
            ("docker", &recorded.docker, &node.docker),
        ] {
            if !r.is_empty() && r != n {
                out.push(Mismatch::Version {
                    what: what.into(),
                    recorded: r.clone(),
                    node: n.clone(),
                });
            }
        }
    }
    out
}

/// `compare`, plus an unreadable CPU description on the node when the record has one to compare.
pub fn check_node(
    recorded: &Compat,
    node: &Compat,
    cpuinfo: &Path,
    mode: RestoreCompat,
) -> Vec<Mismatch> {
    if mode != RestoreCompat::Off && node.cpu_vendor.is_empty() && !recorded.cpu_vendor.is_empty() {
        return vec![Mismatch::CpuUnknown {
            path: cpuinfo.display().to_string(),
        }];
    }
    compare(recorded, node, mode)
}

/// The first line of `runc --version` without its prefix ("runc version 1.1.12" → "1.1.12").
pub fn parse_runc_version(text: &str) -> String {
    text.lines()
        .next()
        .map(|l| {
            l.trim()
                .trim_start_matches("runc version")
                .trim()
                .to_string()
        })
        .unwrap_or_default()
}

/// This host as node `cpuinfo` describes it; `docker` is the node daemon's version. What cannot be
/// read stays empty (the check then says so where it matters).
/// `runc` are the site's runc candidates (`SiteConfig::runc_candidates`).
pub fn probe(cpuinfo: &Path, docker: &str, runc: &[PathBuf]) -> Compat {
    let cpu = std::fs::read_to_string(cpuinfo)
        .map(|t| parse_cpuinfo(&t))
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    // The runc the runtime wrapper runs (Docker's own when there is no wrapper: same package).
    let runc_bin = crate::runtime_wrapper::real_runc(runc).unwrap_or_else(|_| "runc".into());
    let runc = std::process::Command::new(runc_bin)
        .arg("--version")
        .output()
        .ok()
        .map(|o| parse_runc_version(&String::from_utf8_lossy(&o.stdout)))
        .unwrap_or_default();
    let page_size = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .and_then(|p| u64::try_from(p).ok())
        .unwrap_or(0);
    Compat {
        cpu_vendor: cpu.vendor,
        cpu_model: cpu.model,
        cpu_flags: cpu.flags,
        kernel,
        criu: crate::ckpt::criu_version(),
        runc,
        docker: docker.to_string(),
        page_size,
    }
}

/// A node that refused to restore a job, kept in the job's checkpoint directory
/// (`restore-refused/<node>.json`, the newest per node) for `slurm-ckpt list` and for the status
/// records of the job's next run: the refusing run's own records go with its epilog.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Refusal {
    pub at: u64,
    pub instance: Option<String>,
    pub generation: u32,
    pub rank: u32,
    pub node: String,
    /// The refusal and what was done about it.
    pub reason: String,
}

pub const REFUSED_DIR: &str = "restore-refused";

/// Record `r` in `job_dir` (replacing that node's earlier refusal; atomic, so readers never see
/// half a record).
pub fn record_refusal(job_dir: &Path, r: &Refusal) -> crate::error::Result<()> {
    use crate::error::Error;
    let dir = job_dir.join(REFUSED_DIR);
    crate::storage::check_mounted()?;
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let path = dir.join(format!("{}.json", r.node));
    let tmp = dir.join(format!(".{}.json.{}", r.node, std::process::id()));
    crate::ckpt::write_json_durable(&tmp, r)?;
    std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))
}

/// The refusals recorded in `job_dir`, oldest first (unreadable ones are skipped: display only).
pub fn refusals(job_dir: &Path) -> Vec<Refusal> {
    let mut out: Vec<Refusal> = std::fs::read_dir(job_dir.join(REFUSED_DIR))
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
                .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                .filter_map(|e| serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok())
                .collect()
        })
        .unwrap_or_default();
    out.sort_by(|a: &Refusal, b: &Refusal| (a.at, &a.node).cmp(&(b.at, &b.node)));
    out
}

/// The refusals as one line for a status record (those of `instance` only).
pub fn summary(list: &[Refusal], instance: Option<&str>) -> Option<String> {
    let mine: Vec<String> = list
        .iter()
        .filter(|r| r.instance.as_deref() == instance)
        .map(|r| format!("{} ({})", r.reason, crate::state::utc(r.at)))
        .collect();
    (!mine.is_empty()).then(|| mine.join(" | "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_kept_per_node_newest_last() {
        let dir = tempfile::tempdir().unwrap();
        let r = |node: &str, at: u64, instance: Option<&str>| Refusal {
            at,
            instance: instance.map(String::from),
            generation: 1,
            rank: 1,
            node: node.into(),
            reason: format!("node {node} cannot"),
        };
        assert!(refusals(dir.path()).is_empty());
        record_refusal(dir.path(), &r("n3", 5, Some("i"))).unwrap();
        record_refusal(dir.path(), &r("n2", 9, Some("i"))).unwrap();
        record_refusal(dir.path(), &r("n3", 7, Some("i"))).unwrap();
        let all = refusals(dir.path());
        assert_eq!(
            all.iter()
                .map(|x| (x.node.as_str(), x.at))
                .collect::<Vec<_>>(),
            [("n3", 7), ("n2", 9)]
        );
        let s = summary(&all, Some("i")).unwrap();
        assert!(
            s.starts_with("node n3 cannot (1970-01-01 00:00:07 UTC) | node n2"),
            "{s}"
        );
        assert_eq!(summary(&all, None), None);
    }

    const X86: &str = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Gold 6230\nflags\t\t: fpu sse2 avx2 avx512f\n\nprocessor\t: 1\nvendor_id\t: Other\nflags\t\t: fpu\n";

    fn node(flags: &str) -> Compat {
        Compat {
            cpu_vendor: "GenuineIntel".into(),
            cpu_model: "m".into(),
            cpu_flags: flags.split_whitespace().map(String::from).collect(),
            kernel: "6.1.0".into(),
            criu: "4.2".into(),
            runc: "1.1.12".into(),
            docker: "26.1.5".into(),
            page_size: 4096,
        }
    }

    #[test]
    fn cpuinfo_of_the_first_processor() {
        let c = parse_cpuinfo(X86);
        assert_eq!(c.vendor, "GenuineIntel");
        assert_eq!(c.model, "Intel(R) Xeon(R) Gold 6230");
        assert_eq!(c.flags, ["avx2", "avx512f", "fpu", "sse2"]);
        let arm = parse_cpuinfo("processor\t: 0\nFeatures\t: fp asimd aes\nCPU implementer\t: 0x41\nCPU part\t: 0xd0c\n");
        assert_eq!((arm.vendor.as_str(), arm.model.as_str()), ("0x41", "0xd0c"));
        assert_eq!(arm.flags, ["aes", "asimd", "fp"]);
        assert_eq!(parse_cpuinfo(""), CpuInfo::default());
    }

    #[test]
    fn cpu_mode_wants_a_superset_of_flags_and_the_same_vendor() {
        let rec = node("fpu sse2 avx2");
        assert!(compare(&rec, &node("fpu sse2 avx2 avx512f"), RestoreCompat::Cpu).is_empty());
        let m = compare(&rec, &node("fpu sse2"), RestoreCompat::Cpu);
        assert_eq!(
            m,
            [Mismatch::CpuFlags {
                missing: vec!["avx2".into()]
            }]
        );
        assert_eq!(describe(&m), "its CPU lacks flag(s) avx2");
        let mut amd = node("fpu sse2 avx2");
        amd.cpu_vendor = "AuthenticAMD".into();
        assert!(matches!(
            compare(&rec, &amd, RestoreCompat::Cpu)[..],
            [Mismatch::CpuVendor { .. }]
        ));
        let mut big_pages = node("fpu sse2 avx2");
        big_pages.page_size = 65536;
        assert!(matches!(
            compare(&rec, &big_pages, RestoreCompat::Cpu)[..],
            [Mismatch::PageSize { .. }]
        ));
        // Versions only count in strict mode; off checks nothing.
        let mut newer = node("fpu sse2 avx2");
        newer.kernel = "6.8.0".into();
        newer.runc = "1.2.0".into();
        assert!(compare(&rec, &newer, RestoreCompat::Cpu).is_empty());
        let strict = compare(&rec, &newer, RestoreCompat::Strict);
        assert_eq!(strict.len(), 2);
        assert_eq!(
            strict[0].to_string(),
            "kernel 6.8.0, the checkpoint was taken with 6.1.0"
        );
        assert!(compare(&rec, &node(""), RestoreCompat::Off).is_empty());
        // Mitigation and VM flags differ between nodes with the same CPU: never required.
        let bare_metal = node("fpu sse2 avx2 pti hypervisor md_clear");
        assert!(compare(&bare_metal, &node("fpu sse2 avx2"), RestoreCompat::Cpu).is_empty());
    }

    #[test]
    fn old_records_ask_nothing_and_unreadable_nodes_are_refused() {
        let old = Compat::default();
        assert!(compare(&old, &node("fpu"), RestoreCompat::Strict).is_empty());
        let p = Path::new("/x/cpuinfo-n1");
        let m = check_node(&node("fpu"), &Compat::default(), p, RestoreCompat::Cpu);
        assert_eq!(
            m,
            [Mismatch::CpuUnknown {
                path: "/x/cpuinfo-n1".into()
            }]
        );
        assert!(check_node(&node("fpu"), &Compat::default(), p, RestoreCompat::Off).is_empty());
        // A record written by an older helper deserializes with no requirements.
        let back: Compat = serde_json::from_str("{}").unwrap();
        assert_eq!(back, Compat::default());
    }

    #[test]
    fn many_missing_flags_are_summarised() {
        let m = Mismatch::CpuFlags {
            missing: (0..15).map(|i| format!("f{i}")).collect(),
        };
        assert!(m.to_string().ends_with("f11 and 3 more"), "{m}");
        assert_eq!(
            parse_runc_version("runc version 1.1.12\ncommit: v1\n"),
            "1.1.12"
        );
    }
}
