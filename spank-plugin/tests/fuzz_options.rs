//! Property-based fuzzing of the plugin's option parser (issue 14): every `--container-*` value,
//! the mount and environment lists, and the resolution of recorded options, on arbitrary input.
//!
//! Cases per property: `FUZZ_CASES` below, or `PROPTEST_CASES=N` for longer runs by hand.
use proptest::prelude::*;
use spank_container_ckpt::options::{
    normalize_path, parse_ckpt_dir, parse_env, parse_image, parse_interval, parse_mounts,
    path_within, CkptDir, OptId, OptionState, IMAGE_MAX_LEN, INTERVAL_MAX_MIN,
    RESERVED_DESTINATIONS, RESERVED_ENV_PREFIXES,
};
use std::collections::HashMap;

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

/// Arbitrary text, and text made of the characters the parsers split and check on.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[/a.:,=_A-Z0-9 -]{0,40}",
        "(/[a-z.]{0,4}){1,4}:(/[a-z.]{0,4}){1,4}(:(ro|rw|x))?(,(/[a-z.]{0,4}){1,4}:(/[a-z]{0,4}){1,3})?",
        "([A-Z_][A-Z0-9_]{0,6}=[a-z,\t]{0,8})(,[A-Za-z_=]{0,8}){0,3}",
    ]
}

fn is_normalized_absolute(p: &str) -> bool {
    p.starts_with('/')
        && !p.split('/').any(|c| c == ".." || c == ".")
        && !p.contains("//")
        && !p.contains([',', ':'])
        && !p.chars().any(char::is_control)
        && normalize_path(p).as_deref() == Ok(p)
}

fn opt_id() -> impl Strategy<Value = OptId> {
    prop::sample::select(OptId::ALL.to_vec())
}

/// One option callback: (option, argument, how it was recorded: 0 local, 1 inherited, 2 remote).
fn call() -> impl Strategy<Value = (OptId, Option<String>, u8)> {
    (
        opt_id(),
        prop_oneof![
            1 => Just(None),
            2 => text().prop_map(Some),
            2 => "(debian:12|myrun|/ckpt/x|none|mpich|openmpi|zstd:3|5|(null)|/a:/b|X=1)".prop_map(Some),
        ],
        0u8..3,
    )
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn mounts(s in text()) {
        if let Ok(mounts) = parse_mounts(&s) {
            prop_assert!(!mounts.is_empty());
            for (i, m) in mounts.iter().enumerate() {
                // The helper and dockerd get these paths: absolute, normalized, no '..'.
                prop_assert!(is_normalized_absolute(&m.src), "src {:?}", m.src);
                prop_assert!(is_normalized_absolute(&m.dst), "dst {:?}", m.dst);
                prop_assert!(m.dst != "/");
                prop_assert!(!RESERVED_DESTINATIONS.iter().any(|r| path_within(&m.dst, r)));
                prop_assert!(mounts[..i].iter().all(|o| o.dst != m.dst));
            }
            // The helper's `--mount` specs parse back to the same mounts.
            let rendered: Vec<String> = mounts.iter().map(|m| m.to_string()).collect();
            prop_assert_eq!(parse_mounts(&rendered.join(",")), Ok(mounts));
        }
    }

    #[test]
    fn env_list(s in text()) {
        if let Ok(vars) = parse_env(&s) {
            let mut names = Vec::new();
            for v in &vars {
                let (name, value) = v.split_once('=').expect("accepted entries have '='");
                prop_assert!(name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_'));
                prop_assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
                prop_assert!(!value.chars().any(char::is_control));
                prop_assert!(!RESERVED_ENV_PREFIXES.iter().any(|p| name.starts_with(p)));
                prop_assert!(!names.contains(&name), "{} twice", name);
                names.push(name);
            }
            prop_assert_eq!(parse_env(&vars.join(",")), Ok(vars.clone()));
        }
    }

    #[test]
    fn ckpt_dir(s in prop_oneof![text(), "[/a.-]{0,12}"]) {
        if let Ok(CkptDir::Path(p)) = parse_ckpt_dir(Some(&s)) {
            prop_assert!(!p.is_empty() && p != "/");
            prop_assert!(!p.starts_with('-'));
            prop_assert!(!p.split('/').any(|c| c == ".."));
            prop_assert!(!p.chars().any(char::is_control));
            prop_assert_eq!(normalize_path(&p), Ok(p.clone()));
            prop_assert_eq!(parse_ckpt_dir(Some(&p)), Ok(CkptDir::Path(p.clone())));
        }
    }

    #[test]
    fn scalars(s in prop_oneof![text(), "[0-9+ -]{0,8}"]) {
        if let Ok(n) = parse_interval(&s) {
            prop_assert!((1..=INTERVAL_MAX_MIN).contains(&n));
            prop_assert_eq!(parse_interval(&n.to_string()), Ok(n));
        }
        if let Ok(img) = parse_image(&s) {
            prop_assert!(!img.is_empty() && img.len() <= IMAGE_MAX_LEN);
            prop_assert!(img.starts_with(|c: char| c.is_ascii_alphanumeric()));
            prop_assert!(img.chars().all(|c| c.is_ascii_alphanumeric() || "._/:@-".contains(c)));
        }
        let _ = path_within(&s, "/dev");
        let _ = path_within("/dev/x", &s);
    }

    #[test]
    fn option_state(
        calls in prop::collection::vec(call(), 0..8),
        env in prop::collection::vec((opt_id(), text()), 0..4),
    ) {
        let mut st = OptionState::new();
        for (id, arg, how) in &calls {
            let arg = arg.as_deref();
            let _ = match how {
                0 => st.record_local(*id, arg, None),
                1 => st.record_local(*id, arg, arg),
                _ => st.record_remote(*id, arg),
            };
        }
        let env: HashMap<&str, String> = env.into_iter().map(|(id, v)| (id.env_var(), v)).collect();
        match st.resolve(&|k| env.get(k).cloned()) {
            Ok(opts) => {
                if !opts.container_mode() {
                    prop_assert!(opts.ckpt.is_none() && opts.mounts.is_empty() && opts.env.is_empty());
                }
                if opts.ckpt_interval.is_some() || opts.ckpt_compress.is_some() {
                    prop_assert!(opts.ckpt.is_some());
                }
                if let Some(img) = &opts.image {
                    prop_assert!(parse_image(img).is_ok());
                }
                for m in &opts.mounts {
                    prop_assert!(is_normalized_absolute(&m.src) && is_normalized_absolute(&m.dst));
                }
            }
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }
}
