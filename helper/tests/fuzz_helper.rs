//! Property-based fuzzing of the helper's decoders (issue 14): the supervisor↔relay frames, the
//! checkpoint manifest and rank records, and the runtime wrapper's argv classifier.
//!
//! Cases per property: `FUZZ_CASES` below, or `PROPTEST_CASES=N` for longer runs by hand.
use proptest::prelude::*;
use slurm_ckpt::auth::{mac_path, SiteKey};
use slurm_ckpt::ckpt::{
    write_json_durable, write_json_signed, Expect, FileSum, Layout, Manifest, RankRecord, FORMAT,
};
use slurm_ckpt::protocol::{read_frame, write_frame, Frame};
use slurm_ckpt::runtime_wrapper::{classify, rewrite, Op, Roots};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

const FUZZ_CASES: u32 = 10_000;
/// Properties that write files (and fsync, as the product does) run fewer cases by default.
const FS_CASES: u32 = 1000;

fn config() -> ProptestConfig {
    config_with(FUZZ_CASES)
}

fn fs_config() -> ProptestConfig {
    config_with(FS_CASES)
}

fn config_with(default: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

/// A fresh directory for one test case (removed by the case).
fn scratch(tag: &str) -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let d = std::env::temp_dir().join(format!(
        "slurm-ckpt-fuzz-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&d).expect("scratch dir");
    d
}

// ---- frames -----------------------------------------------------------------------------------

fn frame() -> impl Strategy<Value = Frame> {
    let bytes = prop::collection::vec(any::<u8>(), 0..4096);
    prop_oneof![
        bytes.clone().prop_map(Frame::Stdout),
        bytes.prop_map(Frame::Stderr),
        any::<i32>().prop_map(Frame::Exit),
        any::<String>().prop_map(Frame::Fatal),
        Just(Frame::Suspend),
        Just(Frame::Resume),
        Just(Frame::Terminate),
        Just(Frame::Finish),
        Just(Frame::Checkpoint),
    ]
}

/// Bytes that look like frames: a known or unknown type, a length near the real one.
fn frame_like_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..64),
        (
            prop::sample::select(vec![0u8, 1, 2, 3, 4, 5, 9, 10, 11, 12, 13, 14, 15, 255]),
            prop_oneof![0u32..16, Just(1 << 20), Just((1 << 20) + 1), any::<u32>()],
            prop::collection::vec(any::<u8>(), 0..32),
        )
            .prop_map(|(t, len, body)| {
                let mut b = vec![t];
                b.extend_from_slice(&len.to_be_bytes());
                b.extend_from_slice(&body);
                b
            }),
    ]
}

// ---- manifests --------------------------------------------------------------------------------

fn seconds() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(0.0),
        0.0f64..1e6,
        any::<f64>().prop_filter("finite", |f| f.is_finite())
    ]
}

fn file_sum() -> impl Strategy<Value = FileSum> {
    (any::<String>(), any::<u64>(), "[0-9a-f]{64}").prop_map(|(name, bytes, sha256)| FileSum {
        name,
        bytes,
        sha256,
    })
}

fn rank_record() -> impl Strategy<Value = RankRecord> {
    (
        (
            any::<u32>(),
            any::<String>(),
            any::<String>(),
            any::<String>(),
            any::<String>(),
        ),
        (
            any::<u32>(),
            any::<u64>(),
            prop::collection::vec(file_sum(), 0..3),
        ),
        (seconds(), seconds(), seconds()),
        (any::<String>(), any::<u64>(), any::<u64>()),
    )
        .prop_map(
            |(
                (rank, hostname, ip, mac, node),
                (order, bytes, files),
                (dump_seconds, held_seconds, pack_seconds),
                (compression, raw_bytes, reused_bytes),
            )| RankRecord {
                rank,
                hostname,
                ip,
                mac,
                node,
                order,
                bytes,
                files,
                dump_seconds,
                held_seconds,
                compression,
                encryption: String::new(),
                raw_bytes,
                reused_bytes,
                pack_seconds,
                compat: Default::default(),
                phases: Default::default(),
            },
        )
}

fn manifest() -> impl Strategy<Value = Manifest> {
    (
        (
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
            any::<String>(),
        ),
        (
            any::<u32>(),
            any::<u32>(),
            any::<String>(),
            any::<String>(),
            any::<u32>(),
        ),
        (
            any::<String>(),
            prop::collection::vec(any::<String>(), 0..4),
            any::<String>(),
        ),
        (any::<u64>(), any::<String>(), any::<String>(), any::<u64>()),
        prop::collection::vec(rank_record(), 0..4),
        (prop::option::of("[0-9a-f]{32}"), any::<String>()),
    )
        .prop_map(
            |(
                (format, job, step, generation, user),
                (uid, gid, image, image_id, ntasks),
                (mpi, argv, policy),
                (created, criu_version, engine_version, total_bytes),
                ranks,
                (instance, cwd),
            )| Manifest {
                format,
                job,
                step,
                generation,
                user,
                uid,
                gid,
                image,
                image_id,
                ntasks,
                mpi,
                argv,
                instance,
                cwd,
                identity_job: None,
                policy,
                created,
                criu_version,
                engine_version,
                total_bytes,
                ranks,
                commit_seconds: 0.0,
                checkpoint_seconds: 0.0,
                lease: None,
            },
        )
}

/// serde_json parses floats with best-effort precision: equal up to the last bits.
fn same_manifest(a: &Manifest, b: &Manifest) -> bool {
    let close = |x: f64, y: f64| x == y || (x - y).abs() <= 1e-12 * x.abs().max(y.abs());
    let mut b = b.clone();
    for (ra, rb) in a.ranks.iter().zip(b.ranks.iter_mut()) {
        for (x, y) in [
            (ra.dump_seconds, &mut rb.dump_seconds),
            (ra.held_seconds, &mut rb.held_seconds),
            (ra.pack_seconds, &mut rb.pack_seconds),
        ] {
            if close(x, *y) {
                *y = x;
            }
        }
    }
    *a == b
}

/// JSON near a manifest: a valid one with bytes flipped, cut or spliced.
fn mangled_manifest_json() -> impl Strategy<Value = Vec<u8>> {
    (
        manifest(),
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        any::<prop::sample::Index>(),
        any::<bool>(),
    )
        .prop_map(|(m, flips, cut, truncate)| {
            let mut b = serde_json::to_vec(&m).expect("serializable");
            for (i, v) in flips {
                let i = i.index(b.len());
                b[i] = v;
            }
            if truncate {
                b.truncate(cut.index(b.len() + 1));
            }
            b
        })
}

// ---- runtime wrapper argv ---------------------------------------------------------------------

fn argv_word() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec![
            "checkpoint", "restore", "--image-path", "--work-path", "--bundle", "-b", "--root",
            "--log", "--leave-running", "--detach", "start", "create", "-", "--", "",
        ])
        .prop_map(String::from),
        2 => "[a-f0-9]{1,12}",
        1 => "/[a-z/.]{0,12}",
        1 => any::<String>(),
    ]
}

proptest! {
    #![proptest_config(config())]

    // ---- frames ----

    #[test]
    fn frames_round_trip(frames in prop::collection::vec(frame(), 0..6)) {
        let mut buf = Vec::new();
        for f in &frames {
            write_frame(&mut buf, f).expect("write to a Vec");
        }
        let mut r = &buf[..];
        for f in &frames {
            prop_assert_eq!(read_frame(&mut r).expect("decodes"), Some(f.clone()));
        }
        prop_assert!(read_frame(&mut r).expect("clean end").is_none());
    }

    #[test]
    fn truncated_frame_is_never_delivered(f in frame(), cut in any::<prop::sample::Index>()) {
        let enc = f.encode();
        let cut = cut.index(enc.len());
        match read_frame(&mut &enc[..cut]) {
            Ok(Some(g)) => prop_assert!(false, "frame {:?} from {} of {} bytes", g, cut, enc.len()),
            Ok(None) | Err(_) => {}
        }
    }

    #[test]
    fn frame_stream_never_panics(bytes in prop_oneof![
        prop::collection::vec(any::<u8>(), 0..256),
        prop::collection::vec(frame_like_bytes(), 0..6).prop_map(|v| v.concat()),
    ]) {
        let mut r = &bytes[..];
        // Every frame consumes at least its 5-byte header: the loop ends.
        for _ in 0..=bytes.len() / 5 + 1 {
            match read_frame(&mut r) {
                Ok(Some(f)) => {
                    // What decodes re-encodes to a frame that decodes the same.
                    let again = read_frame(&mut &f.encode()[..]).expect("re-encoded frame decodes");
                    prop_assert_eq!(again, Some(f));
                }
                Ok(None) | Err(_) => break,
            }
        }
    }

    #[test]
    fn frame_decode_any_type(t in any::<u8>(), payload in prop::collection::vec(any::<u8>(), 0..16)) {
        if let Ok(f) = Frame::decode(t, payload.clone()) {
            let enc = f.encode();
            prop_assert_eq!(enc[0], t);
            match &f {
                // Output and exit codes are kept exactly.
                Frame::Stdout(_) | Frame::Stderr(_) | Frame::Exit(_) => {
                    prop_assert_eq!(&enc[5..], &payload[..])
                }
                // Text: invalid UTF-8 becomes U+FFFD.
                Frame::Fatal(m) => prop_assert_eq!(m.clone(), String::from_utf8_lossy(&payload)),
                // Signals carry nothing (a payload sent with one is ignored).
                _ => prop_assert_eq!(enc.len(), 5),
            }
        }
    }

    // ---- manifests and rank records ----

    #[test]
    fn manifest_json_never_panics(bytes in prop_oneof![
        prop::collection::vec(any::<u8>(), 0..256),
        mangled_manifest_json(),
    ]) {
        if let Ok(m) = serde_json::from_slice::<Manifest>(&bytes) {
            let e = Expect {
                job: m.job,
                step: m.step,
                instance: m.instance.as_deref(),
                uid: m.uid,
                ntasks: m.ntasks,
                image: &m.image,
                image_id: &m.image_id,
                argv: &m.argv,
                cwd: &m.cwd,
                resume: false,
            };
            if m.check(&e).is_ok() {
                prop_assert_eq!(m.format, FORMAT);
                prop_assert_eq!(m.ranks.len() as u64, u64::from(m.ntasks));
            }
        }
        let _ = serde_json::from_slice::<RankRecord>(&bytes);
    }

    #[test]
    fn manifest_json_round_trip(m in manifest()) {
        // As `write_json_durable` writes it and `Layout::load_manifest` reads it.
        let text = serde_json::to_vec_pretty(&m).expect("serializable");
        let back: Manifest = serde_json::from_slice(&text).expect("a written manifest loads");
        prop_assert!(same_manifest(&m, &back), "{:?} != {:?}", m, back);
    }

    #[test]
    fn manifest_check_is_strict(
        mut m in manifest(),
        job in any::<u32>(),
        uid in any::<u32>(),
        img in any::<String>(),
        id in prop_oneof![any::<String>(), "sha256:[0-9a-f]{0,64}"],
        instance in prop::option::of("[0-9a-f]{32}"),
        // Which fields the job shares with the manifest, so that every check is reached.
        same in any::<[bool; 6]>(),
    ) {
        if same[0] {
            m.ntasks = m.ranks.len() as u32;
            m.format = FORMAT;
        }
        let job = if same[1] { m.job } else { job };
        let uid = if same[2] { m.uid } else { uid };
        let img = if same[3] { m.image.clone() } else { img };
        let id = if same[4] { m.image_id.clone() } else { id };
        let instance = if same[5] { m.instance.clone() } else { instance };
        let e = Expect {
            job,
            step: m.step,
            instance: instance.as_deref(),
            uid,
            ntasks: m.ntasks,
            image: &img,
            image_id: &id,
            argv: &m.argv,
            cwd: &m.cwd,
            resume: false,
        };
        match m.check(&e) {
            Ok(()) => {
                prop_assert_eq!(&m.instance, &instance);
                prop_assert_eq!(m.job, job);
                prop_assert_eq!(m.uid, uid);
                prop_assert_eq!(&m.image, &img);
                prop_assert_eq!(&m.image_id, &id);
                prop_assert_eq!(m.ranks.len() as u64, u64::from(m.ntasks));
            }
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }

    // ---- runtime wrapper ----

    #[test]
    fn classify_indices_are_in_bounds(args in prop::collection::vec(argv_word(), 0..12)) {
        match classify(&args) {
            Op::Checkpoint { image_path_idx, id } => {
                prop_assert!(image_path_idx < args.len());
                prop_assert_eq!(args[image_path_idx - 1].as_str(), "--image-path");
                prop_assert!(args[..image_path_idx - 1].iter().any(|a| a == "checkpoint"));
                prop_assert_eq!(Some(&id), args.last());
                prop_assert!(!id.starts_with('-'));
            }
            Op::Restore { image_path_idx } => {
                prop_assert!(image_path_idx < args.len());
                prop_assert_eq!(args[image_path_idx - 1].as_str(), "--image-path");
                prop_assert!(args[..image_path_idx - 1].iter().any(|a| a == "restore"));
            }
            Op::Other => {}
        }
    }
}

proptest! {
    #![proptest_config(fs_config())]

    #[test]
    fn signed_manifest_round_trip_and_tamper(
        m in manifest(),
        flip in prop::option::of((any::<prop::sample::Index>(), 1u8..=255)),
        in_mac in any::<bool>(),
    ) {
        let root = scratch("signed");
        let layout = Layout::new(&root, "u", "1");
        let key = SiteKey::derive(b"fuzz");
        let g = m.generation;
        let path = layout.gen_dir(g).join("manifest.json");
        std::fs::create_dir_all(layout.gen_dir(g)).expect("gen dir");
        write_json_signed(&path, &m, &key).expect("write");
        let back = layout.load_verified(g, &key);
        let foreign = layout.load_verified(g, &SiteKey::derive(b"other site"));
        // One byte of the manifest or of its MAC changed.
        let tampered = flip.map(|(i, x)| {
            let target = if in_mac { mac_path(&path) } else { path.clone() };
            let mut b = std::fs::read(&target).expect("read");
            let i = i.index(b.len());
            b[i] ^= x;
            std::fs::write(&target, &b).expect("write");
            layout.load_verified(g, &key)
        });
        std::fs::remove_dir_all(&root).expect("cleanup");
        let back = back.map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(same_manifest(&m, &back), "{:?} != {:?}", m, back);
        prop_assert!(foreign.is_err());
        if let Some(Ok(t)) = tampered {
            // Only an edit of the MAC file that keeps its value (hex letter case) still verifies.
            prop_assert!(in_mac && same_manifest(&m, &t));
        }
    }

    #[test]
    fn verified_reader_on_garbage(
        body in prop_oneof![prop::collection::vec(any::<u8>(), 0..256), mangled_manifest_json()],
        tag in prop_oneof![any::<String>(), "[0-9a-fA-F+-]{0,66}"],
    ) {
        let root = scratch("unsigned");
        let layout = Layout::new(&root, "u", "1");
        let key = SiteKey::derive(b"fuzz");
        let path = layout.gen_dir(1).join("manifest.json");
        std::fs::create_dir_all(layout.gen_dir(1)).expect("gen dir");
        std::fs::write(&path, &body).expect("write");
        std::fs::write(mac_path(&path), &tag).expect("write");
        let res = layout.load_verified(1, &key);
        std::fs::remove_dir_all(&root).expect("cleanup");
        prop_assert!(res.is_err());
        prop_assert!(!key.verify(&body, &tag));
        prop_assert!(key.verify(&body, &key.sign(&body)));
    }

    #[test]
    fn manifest_round_trip_through_layout(m in manifest(), g in 0u32..100_000) {
        let root = scratch("layout");
        let layout = Layout::new(&root, "u", "1");
        std::fs::create_dir_all(layout.gen_dir(g)).expect("gen dir");
        write_json_durable(&layout.gen_dir(g).join("manifest.json"), &m).expect("write");
        let back = layout.load_manifest(g);
        let latest = layout.latest();
        std::fs::remove_dir_all(&root).expect("cleanup");
        let back = back.expect("a written manifest loads");
        prop_assert!(same_manifest(&m, &back), "{:?} != {:?}", m, back);
        prop_assert!(latest.is_some_and(|l| same_manifest(&m, &l)));
    }

    #[test]
    fn load_manifest_on_garbage(bytes in prop_oneof![
        prop::collection::vec(any::<u8>(), 0..256),
        mangled_manifest_json(),
    ]) {
        let root = scratch("garbage");
        let layout = Layout::new(&root, "u", "1");
        std::fs::create_dir_all(layout.gen_dir(1)).expect("gen dir");
        std::fs::write(layout.gen_dir(1).join("manifest.json"), &bytes).expect("write");
        let loaded = layout.load_manifest(1);
        let latest = layout.latest();
        std::fs::remove_dir_all(&root).expect("cleanup");
        match loaded {
            Ok(m) => prop_assert!(latest.is_some_and(|l| same_manifest(&m, &l))),
            Err(e) => {
                prop_assert!(e.to_string().contains("bad manifest"), "{}", e);
                prop_assert!(latest.is_none());
            }
        }
    }

    #[test]
    fn rewrite_without_redirect_keeps_argv(args in prop::collection::vec(argv_word(), 0..12)) {
        // A restore touches the bundle and the image dir named in argv: not fuzzed on this host.
        prop_assume!(!matches!(classify(&args), Op::Restore { .. }));
        let rt = scratch("rt");
        let root = rt.join("ckpt");
        let roots = Roots { runtime_dir: &rt, allowed: vec![root.as_path()] };
        let res = rewrite(args.clone(), &roots);
        std::fs::remove_dir_all(&rt).expect("cleanup");
        match (res, classify(&args)) {
            (Ok(out), op) => {
                prop_assert_eq!(out.argv, args.iter().map(OsString::from).collect::<Vec<_>>());
                // Only a checkpoint is noted (as Docker's own path).
                prop_assert_eq!(out.note.is_some(), matches!(op, Op::Checkpoint { .. }));
            }
            // Refused (fail closed): only a checkpoint whose container id leads out of the
            // redirect directory onto something that exists.
            (Err(e), Op::Checkpoint { id, .. }) => {
                prop_assert!(id.contains('/') || id == "." || id == "..", "{id:?}: {e}");
            }
            (Err(e), op) => return Err(TestCaseError::fail(format!("{op:?} refused: {e}"))),
        }
    }

    #[test]
    fn rewrite_redirect_changes_only_the_image_path(
        before in prop::collection::vec(argv_word(), 0..4),
        between in prop::collection::vec(argv_word(), 0..4),
        id in "[a-f0-9]{1,16}",
    ) {
        let rt = scratch("redirect");
        let root = rt.join("ckpt");
        let dest = root.join("u/1/.g0001.tmp/rank-0");
        let image_path = rt.join("containerd-tmp");
        std::fs::create_dir_all(rt.join("redirect")).expect("redirect dir");
        // The supervisor creates the destination before it writes the redirect.
        std::fs::create_dir_all(&dest).expect("destination");
        let redirect = rt.join("redirect").join(&id);
        std::fs::write(&redirect, dest.to_string_lossy().as_bytes()).expect("redirect");
        // The wrapper trusts only root's redirect files: nothing to check when not run as root.
        let as_root = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&redirect).expect("stat")) == 0;
        let mut args: Vec<String> = before.into_iter().filter(|a| a != "checkpoint" && a != "restore").collect();
        args.push("checkpoint".into());
        args.push("--image-path".into());
        args.push(image_path.to_string_lossy().into_owned());
        args.extend(between.into_iter().filter(|a| a != "--image-path"));
        args.push(id.clone());
        let op = classify(&args);
        let roots = Roots { runtime_dir: &rt, allowed: vec![root.as_path()] };
        let res = rewrite(args.clone(), &roots);
        let pointer = std::fs::read_to_string(image_path.join("slurm-ckpt-pointer"));
        std::fs::remove_dir_all(&rt).expect("cleanup");
        prop_assume!(as_root);
        let out = res.map_err(|e| TestCaseError::fail(e.to_string()))?.argv;
        let Op::Checkpoint { image_path_idx, .. } = op else {
            return Err(TestCaseError::fail(format!("not a checkpoint: {args:?}")));
        };
        prop_assert_eq!(out.len(), args.len());
        for (i, (o, a)) in out.iter().zip(&args).enumerate() {
            if i == image_path_idx {
                prop_assert_eq!(Path::new(o), dest.as_path());
            } else {
                prop_assert_eq!(o, &OsString::from(a));
            }
        }
        prop_assert_eq!(pointer.ok(), Some(dest.to_string_lossy().into_owned()));
    }
}
