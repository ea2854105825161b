//! Property-based fuzzing of the site settings parser (issue 14): plugstack.conf arguments and
//! lines, the renderer's round trip, and the invariants the plugin and helper rely on.
//!
//! Cases per property: `FUZZ_CASES` below, or `PROPTEST_CASES=N` for longer runs by hand.
use proptest::prelude::*;
use slurm_ckpt_site::{
    docker_full_name, glob_match, image_allowed, normalize_path, SiteConfig, KEYS, PLUGIN_FILE,
};

const FUZZ_CASES: u32 = 10_000;

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

/// Values near the accepted ones (paths, numbers, lists, sockets, CIDRs) plus arbitrary text.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[/a-z0-9.%:,*?_-]{0,24}",
        "unix:///[a-z%n/.]{0,16}",
        "[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}/[0-9]{1,2}",
        "(zstd|none)(:[0-9+-]{0,3})?",
        "[0-9+-]{0,6}",
        "(yes|no|y|n|1|0|true|false|YES|Tru)",
        "(direct|docker|mpich|openmpi|none|freeze-all|cf-rl|cl-rl|cf-rf|cl-rf)",
    ]
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(KEYS.to_vec()).prop_map(String::from),
        1 => "[a-z_]{0,12}",
    ]
}

fn arg() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => (key(), value()).prop_map(|(k, v)| format!("{k}={v}")),
        1 => any::<String>(),
    ]
}

/// What the plugin and the helper rely on in an accepted configuration.
fn check_invariants(cfg: &SiteConfig) {
    for p in [
        &cfg.helper,
        &cfg.ckpt_root,
        &cfg.runtime_dir,
        &cfg.stage_dir,
    ] {
        let s = p.to_str().expect("accepted paths are text");
        assert!(s.starts_with('/'), "{s} not absolute");
        assert!(!s.split('/').any(|c| c == ".."), "{s} has ..");
        assert_eq!(normalize_path(s).as_deref(), Ok(s), "{s} not normalized");
    }
    assert!(cfg.docker_socket.starts_with("unix:///"));
    assert!((8..=24).contains(&cfg.subnet.prefix));
    assert_eq!(
        u32::from(cfg.subnet.base) % cfg.subnet.size(),
        0,
        "host bits set"
    );
    assert!(cfg.subnet.size() >= 256);
    assert!((1..=86_400).contains(&cfg.timeout_secs));
    assert!((1..=100).contains(&cfg.keep_generations));
    assert!(cfg.dump_parallel <= 256);
    assert!(!cfg.network.is_empty() && !cfg.network.starts_with('-'));
    assert!(cfg
        .image_allowlist
        .iter()
        .all(|p| !p.is_empty() && !p.contains(',')));
    // Rendering for the helper never fails to produce every key.
    assert_eq!(cfg.to_helper_args().len(), KEYS.len() * 2);
    let _ = cfg.socket_for("node1");
}

/// `to_helper_args` parsed back is the same configuration (render → parse).
fn check_round_trip(cfg: &SiteConfig) {
    let args = cfg.to_helper_args();
    let values: Vec<&String> = args.iter().skip(1).step_by(2).collect();
    assert_eq!(SiteConfig::parse(&values).as_ref(), Ok(cfg));
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn parse_never_panics_and_accepted_is_sound(args in prop::collection::vec(arg(), 0..6)) {
        if let Ok(cfg) = SiteConfig::parse(&args) {
            check_invariants(&cfg);
            check_round_trip(&cfg);
        }
    }

    #[test]
    fn every_key_with_any_value(k in prop::sample::select(KEYS.to_vec()), v in value()) {
        let arg = format!("{k}={v}");
        match SiteConfig::parse(&[arg.as_str()]) {
            Ok(cfg) => {
                check_invariants(&cfg);
                check_round_trip(&cfg);
                // The rendered value of the key parses to the same setting.
                let rendered = cfg.value_of(k).expect("every key renders");
                let again = SiteConfig::parse(&[format!("{k}={rendered}")]);
                prop_assert_eq!(again.as_ref(), Ok(&cfg));
            }
            Err(e) => {
                // Errors name what was wrong, never panic while formatting.
                let msg = e.to_string();
                prop_assert!(msg.contains(k), "{}", msg);
            }
        }
    }

    #[test]
    fn plugstack_file_never_panics(lines in prop::collection::vec(
        prop_oneof![
            any::<String>(),
            prop::collection::vec(arg(), 0..4).prop_map(|a| format!(
                "required /usr/lib/slurm/{PLUGIN_FILE} {} # comment", a.join(" ")
            )),
            "(optional|required) [ /a-z.#=_]{0,30}",
            // Relative patterns only: they match in the scratch directory (this file itself,
            // so include loops are fuzzed too), never the host's files.
            "include[ ]{0,2}[a-z.#=_*?\\[\\] ]{0,20}",
        ],
        0..5,
    )) {
        let dir = std::env::temp_dir().join(format!("fuzz-site-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("plugstack.conf");
        std::fs::write(&path, lines.join("\n")).expect("write");
        let parsed = SiteConfig::from_plugstack(&path);
        let _ = std::fs::remove_dir_all(&dir);
        if let Ok(cfg) = parsed {
            check_invariants(&cfg);
            check_round_trip(&cfg);
        }
    }

    #[test]
    fn plugstack_line_round_trip(mut args in prop::collection::vec(arg(), 0..6)) {
        // Whatever parses as Slurm's argv parses the same from a plugstack.conf line, for the
        // arguments plugstack.conf can carry (no blanks, no '#').
        args.retain(|a| !a.is_empty() && !a.contains(char::is_whitespace) && !a.contains('#'));
        if let Ok(cfg) = SiteConfig::parse(&args) {
            let dir = std::env::temp_dir().join(format!("fuzz-site-rt-{}", std::process::id()));
            std::fs::create_dir_all(&dir).expect("temp dir");
            let path = dir.join("plugstack.conf");
            let line = format!("required /usr/lib/slurm/{PLUGIN_FILE} {}\n", args.join(" "));
            std::fs::write(&path, line).expect("write");
            let parsed = SiteConfig::from_plugstack(&path);
            let _ = std::fs::remove_dir_all(&dir);
            prop_assert_eq!(parsed, Ok(cfg));
        }
    }

    #[test]
    fn normalize_path_is_idempotent_and_safe(p in prop_oneof![any::<String>(), "[/a.]{0,20}"]) {
        if let Ok(n) = normalize_path(&p) {
            prop_assert!(!n.split('/').any(|c| c == ".." || c == "."));
            prop_assert!(!n.contains("//"));
            prop_assert!(!n.chars().any(char::is_control));
            prop_assert_eq!(p.starts_with('/'), n.starts_with('/'));
            prop_assert_eq!(normalize_path(&n), Ok(n.clone()));
        }
    }

    #[test]
    fn globs_and_images_never_panic(
        pattern in prop_oneof![any::<String>(), "[a-z*?/:.]{0,12}"],
        text in prop_oneof![any::<String>(), "[a-z/:.@]{0,16}"],
    ) {
        let _ = glob_match(&pattern, &text);
        prop_assert!(glob_match(&text, &text));
        prop_assert!(glob_match("*", &text));
        let full = docker_full_name(&text);
        prop_assert!(full.contains('/'));
        if let Ok(cfg) = SiteConfig::parse(&[format!("image_allowlist={pattern}")]) {
            let _ = image_allowed(&cfg, &text);
        }
    }
}
