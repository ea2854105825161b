//! Property-based tests of the plugin→helper requests (issue 15): whatever the plugin can encode,
//! the helper decodes to the same request; arbitrary command lines never panic the decoder.
//!
//! Cases per property: `FUZZ_CASES` below, or `PROPTEST_CASES=N` for longer runs by hand.
use proptest::prelude::*;
use slurm_ckpt_site::instance::JobInstance;
use slurm_ckpt_site::job_paths::parse_mount;
use slurm_ckpt_site::request::{CleanupRequest, RelayRequest, SuperviseRequest};
use slurm_ckpt_site::{CpuList, MpiKind, SiteConfig};

const FUZZ_CASES: u32 = 2_000;

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(FUZZ_CASES);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

fn node() -> impl Strategy<Value = String> {
    "[a-z0-9][a-z0-9._-]{0,20}"
}

fn site() -> impl Strategy<Value = Option<SiteConfig>> {
    prop_oneof![
        Just(None),
        Just(Some(SiteConfig::default())),
        (1u32..=100, prop::bool::ANY).prop_map(|(k, enc)| {
            let args = [format!("keep_generations={k}"), format!("encrypt={enc}")];
            SiteConfig::parse(&args).ok()
        }),
    ]
}

prop_compose! {
    fn supervise()(
        fd in any::<i32>(),
        ids in prop::array::uniform8(any::<u32>()),
        node in node(),
        instance in prop::option::of(prop::array::uniform16(any::<u8>())),
        cpus in prop::option::of(any::<u32>()),
        mem_mb in prop::option::of(any::<u64>()),
        cpuset in prop::option::of(prop::collection::vec(0u32..1024, 1..8)),
        image in "[a-z0-9][a-z0-9._/:@-]{0,40}",
        mpi in prop::sample::select(vec![MpiKind::Mpich, MpiKind::OpenMpi, MpiKind::None]),
        ckpt in prop::option::of("[a-z0-9][a-z0-9_]{0,8}(/[a-z0-9_]{1,8}){0,2}"),
        interval in prop::option::of(1u32..=525_600),
        mounts in prop::collection::vec(("/[a-z]{1,6}", "/[a-z]{1,6}", prop::bool::ANY), 0..4),
        env in prop::collection::vec(("[A-Z][A-Z0-9_]{0,8}", "[ -~]{0,12}"), 0..4),
        cwd in "/[ -~]{0,20}",
        site in site(),
        argv in prop::collection::vec(any::<String>(), 1..5),
    ) -> SuperviseRequest {
        // What the plugin's parser lets through: valid entries, each destination once.
        let specs = mounts;
        let mut mounts: Vec<slurm_ckpt_site::job_paths::Mount> = Vec::new();
        for (s, d, ro) in specs {
            let mode = if ro { "ro" } else { "rw" };
            if let Ok(m) = parse_mount(&format!("{s}:{d}:{mode}")) {
                if !mounts.iter().any(|o| o.dst == m.dst) {
                    mounts.push(m);
                }
            }
        }
        let mut seen = Vec::new();
        let env = env
            .into_iter()
            .filter(|(n, _)| !n.starts_with("SLURM_") && !seen.contains(n) && { seen.push(n.clone()); true })
            .map(|(n, v)| format!("{n}={v}"))
            .collect();
        SuperviseRequest {
            fd,
            job: ids[0],
            step: ids[1],
            rank: ids[2],
            ntasks: ids[3],
            nnodes: ids[4],
            node,
            uid: ids[5],
            gid: ids[6],
            restart_count: ids[7],
            instance: instance.map(JobInstance::from_bytes),
            cpus,
            mem_mb,
            cpuset: cpuset.and_then(CpuList::from_ids),
            image,
            mpi,
            ckpt,
            ckpt_interval: interval,
            rerun: fd % 2 == 1,
            mounts,
            env,
            cwd,
            site,
            plugstack: None,
            argv,
        }
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn supervise_round_trips(r in supervise()) {
        let argv = r.to_argv();
        prop_assert_eq!(&argv[..2], &["slurm-ckpt".to_string(), "supervise".to_string()]);
        // The job's argv is passed through untouched, whatever it looks like.
        prop_assert_eq!(&argv[argv.len() - r.argv.len()..], &r.argv[..]);
        prop_assert_eq!(SuperviseRequest::decode(&argv[2..]), Ok(r));
    }

    #[test]
    fn relay_and_cleanup_round_trip(fd in any::<i32>(), rank in any::<u32>(), job in any::<u32>(), node in node(), site in site()) {
        let r = RelayRequest { fd, rank };
        prop_assert_eq!(RelayRequest::decode(&r.to_argv()[2..]), Ok(r));
        let c = CleanupRequest { job, node, site, plugstack: None };
        prop_assert_eq!(CleanupRequest::decode(&c.to_argv()[2..]), Ok(c));
    }

    #[test]
    fn decoding_never_panics(args in prop::collection::vec(prop_oneof![
        any::<String>(),
        prop::sample::select(vec!["--fd", "--job", "--node", "--mount", "--env", "--site", "--", "--cpuset", "--instance"]).prop_map(String::from),
        "[0-9]{1,4}",
    ], 0..24)) {
        let _ = SuperviseRequest::decode(&args);
        let _ = CleanupRequest::decode(&args);
        let _ = RelayRequest::decode(&args);
    }
}
