//! Regression tests for the faults a red-team run found, one named test per
//! fault (`fault_NN_…`, numbered as in the report). Each builds its own
//! small input (a bundle written by `tfbn::testing::bundle::BundleWriter`, a crafted
//! file, a FIFO) and, where the fault was in the command line's behaviour
//! (exit status, signals, races), runs the real binary.
//!
//! Two rows live beside the tests of their subject, under the same naming:
//! `fault_09_…` (an unusable `.meta` is a note and the settings fall back)
//! in `found.rs`, and `fault_10_…` (no byte of a file outside the
//! checkpoint reaches an error) in `bad_input.rs`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use prost::Message;
use tfbn::testing::bundle::{Bundle, BundleWriter, Extent, WriteOptions};
use tfbn::testing::proto::bundle::BundleEntryProto;
use tfbn::{DType, Error, Tensor, TensorData};

// ---- helpers ---------------------------------------------------------------

fn f32s(shape: &[u64], v: &[f32]) -> Tensor {
    Tensor {
        dtype: DType::F32,
        shape: shape.to_vec(),
        data: TensorData::Bytes(v.iter().flat_map(|x| x.to_le_bytes()).collect()),
    }
}

fn with_suffix(p: &Path, s: &str) -> PathBuf {
    PathBuf::from(format!("{}{s}", p.display()))
}

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid C string.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
}

/// A TF1-named checkpoint with one batch-norm layer `bn` of `c` channels
/// (and a conv kernel). `beta_slices`: store `bn/beta` in these many row
/// slices instead of whole. `edit` may change the index pairs.
fn bn_checkpoint(
    dir: &Path,
    c: u64,
    beta_slices: usize,
    edit: impl FnOnce(&mut Vec<(Vec<u8>, Vec<u8>)>),
) -> PathBuf {
    let prefix = dir.join("model.ckpt");
    let mut w = BundleWriter::create(&prefix, WriteOptions::default()).unwrap();
    let vals = |base: f32| (0..c).map(|i| base + i as f32).collect::<Vec<_>>();
    w.add("bn/gamma", &f32s(&[c], &vals(1.0))).unwrap();
    if beta_slices == 0 {
        w.add("bn/beta", &f32s(&[c], &vals(10.0))).unwrap();
    } else {
        let per = c / beta_slices as u64;
        for s in 0..beta_slices as u64 {
            let start = s * per;
            let len = if s + 1 == beta_slices as u64 {
                c - start
            } else {
                per
            };
            let v: Vec<f32> = (start..start + len).map(|i| 10.0 + i as f32).collect();
            w.add_slice(
                "bn/beta",
                &[c],
                &[Extent {
                    start: start as i64,
                    length: Some(len as i64),
                }],
                &f32s(&[len], &v),
            )
            .unwrap();
        }
    }
    w.add("bn/moving_mean", &f32s(&[c], &vals(0.5))).unwrap();
    w.add("bn/moving_variance", &f32s(&[c], &vals(2.0)))
        .unwrap();
    w.add("conv/kernel", &f32s(&[1, 1, 1, c], &vals(0.0)))
        .unwrap();
    w.finish_with(edit).unwrap();
    prefix
}

/// Runs `tfbn` with `args` (and `env`), killed after `limit`: a test that
/// hangs is a failure, not a stuck suite.
fn tfbn_env(args: &[&str], env: &[(&str, &str)], limit: Duration) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tfbn"));
    cmd.args(args)
        .env("TF_CPP_MIN_LOG_LEVEL", "3")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd.spawn().unwrap();
    wait_limited(child, limit, &format!("tfbn {args:?}"))
}

fn tfbn(args: &[&str]) -> Output {
    tfbn_env(args, &[], Duration::from_secs(60))
}

fn wait_limited(mut child: Child, limit: Duration, what: &str) -> Output {
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "{what}: still running after {limit:?} (stderr: {})",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Exit code 2 (bad input) with a one-line message containing every one of
/// `needles`; returns the message.
fn assert_bad_input(o: &Output, needles: &[&str]) -> String {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(2), "status {:?}: {err}", o.status);
    let line = err.trim_end();
    assert!(!line.contains('\n'), "more than one line: {err}");
    for n in needles {
        assert!(line.contains(n), "{n:?} missing from: {err}");
    }
    assert!(!err.contains("panicked"), "{err}");
    line.to_string()
}

fn code(s: ExitStatus) -> Option<i32> {
    s.code()
}

// ---- faults 1 and 2: a broken or foreign libtensorflow --------------------------

/// The installed `tensorflow` package folder the suite uses, if any
/// (`TFBN_TF_LIB`, else the project venv). `TFBN_REQUIRE_TF=1` makes a
/// missing one a failure.
fn real_tf_dir() -> Option<PathBuf> {
    let from_env = std::env::var_os("TFBN_TF_LIB").map(PathBuf::from);
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/lib");
    let from_venv = std::fs::read_dir(&venv).ok().and_then(|rd| {
        rd.flatten()
            .map(|e| e.path().join("site-packages/tensorflow"))
            .find(|p| p.join("libtensorflow_cc.so.2").is_file())
    });
    let found = from_env
        .filter(|p| p.join("libtensorflow_cc.so.2").is_file())
        .or(from_venv);
    if found.is_none() && std::env::var("TFBN_REQUIRE_TF").is_ok_and(|v| v == "1") {
        panic!("TFBN_REQUIRE_TF=1 but no tensorflow package folder found");
    }
    found
}

/// A folder posing as a `tensorflow` package: `cc` as the C-API library,
/// and the real framework library (or a copy of `cc`).
fn fake_tf_dir(dir: &Path, cc: &[u8], real: Option<&Path>) -> PathBuf {
    let pkg = dir.join("tensorflow");
    std::fs::create_dir_all(&pkg).unwrap();
    std::fs::write(pkg.join("libtensorflow_cc.so.2"), cc).unwrap();
    let fw = pkg.join("libtensorflow_framework.so.2");
    match real {
        Some(r) => std::os::unix::fs::symlink(r.join("libtensorflow_framework.so.2"), &fw).unwrap(),
        None => std::fs::write(&fw, cc).unwrap(),
    }
    pkg
}

/// `tfbn verify` with `TFBN_TF_LIB=pkg`, from the repository root (so the
/// project venv is the next place); `explicit_only` stops the search there.
fn verify_with_tf_lib(ckpt: &Path, pkg: &Path, explicit_only: bool) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tfbn"));
    cmd.args(["verify", ckpt.to_str().unwrap(), "--tf-backend", "eigen"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("TFBN_TF_LIB", pkg)
        .env("TF_CPP_MIN_LOG_LEVEL", "3")
        .env("XDG_CACHE_HOME", pkg.parent().unwrap().join("cache"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if explicit_only {
        cmd.env("TFBN_TF_EXPLICIT_ONLY", "1");
    } else {
        cmd.env_remove("TFBN_TF_EXPLICIT_ONLY");
    }
    wait_limited(
        cmd.spawn().unwrap(),
        Duration::from_secs(300),
        "tfbn verify",
    )
}

fn assert_refused_library(o: &Output, lib: &Path, why: &str) {
    let err = stderr(o);
    assert_eq!(
        o.status.code(),
        Some(2),
        "status {:?} (135 = SIGBUS): {err}",
        o.status
    );
    assert!(!err.contains("panicked"), "{err}");
    let line = err
        .lines()
        .find(|l| l.contains(lib.to_str().unwrap()))
        .unwrap_or_else(|| panic!("{} not named: {err}", lib.display()));
    assert!(line.contains(why), "{why:?} missing from: {line}");
}

#[test]
fn fault_01_truncated_libtensorflow_is_refused_and_the_next_place_tried() {
    let dir = tempfile::tempdir().unwrap();
    let real = real_tf_dir();
    let whole = match &real {
        Some(r) => {
            let mut head = vec![0u8; 1 << 20];
            let mut f = std::fs::File::open(r.join("libtensorflow_cc.so.2")).unwrap();
            std::io::Read::read_exact(&mut f, &mut head).unwrap();
            head
        }
        // Without TF, any truncated shared object shows the same fault.
        None => std::fs::read(std::env::current_exe().unwrap()).unwrap()[..1 << 16].to_vec(),
    };
    let pkg = fake_tf_dir(dir.path(), &whole, real.as_deref());
    let cc = pkg.join("libtensorflow_cc.so.2");
    let ckpt = tf1_copy(dir.path());
    // Only that place: a message naming the file (it was SIGBUS, exit 135).
    let o = verify_with_tf_lib(&ckpt, &pkg, true);
    assert_refused_library(&o, &cc, "past the end");
    // The search goes on to the project venv, which works.
    if real.is_some() && Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv").is_dir() {
        let o = verify_with_tf_lib(&ckpt, &pkg, false);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    }
}

#[test]
fn fault_02_non_tensorflow_shared_object_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let libm = [
        "/lib/x86_64-linux-gnu/libm.so.6",
        "/usr/lib/x86_64-linux-gnu/libm.so.6",
        "/lib64/libm.so.6",
        "/lib/aarch64-linux-gnu/libm.so.6",
    ]
    .iter()
    .map(Path::new)
    .find(|p| p.is_file())
    .expect("libm.so.6");
    let pkg = fake_tf_dir(dir.path(), &std::fs::read(libm).unwrap(), None);
    let cc = pkg.join("libtensorflow_cc.so.2");
    let ckpt = tf1_copy(dir.path());
    // It panicked in tensorflow-sys-runtime ("function not loaded: TF_Version").
    let o = verify_with_tf_lib(&ckpt, &pkg, true);
    assert_refused_library(&o, &cc, "defines TF_Version");
    // A file that is not ELF at all, and one too short for a header.
    for bytes in [&b"#!/bin/sh\necho not a library\n"[..], &b"\x7fELF"[..]] {
        let d = tempfile::tempdir().unwrap();
        let pkg = fake_tf_dir(d.path(), bytes, None);
        let o = verify_with_tf_lib(&ckpt, &pkg, true);
        assert_refused_library(
            &o,
            &pkg.join("libtensorflow_cc.so.2"),
            "not a usable library",
        );
    }
}

// ---- fault 3: a FIFO where a data file should be ----------------------------

#[test]
fn fault_03_fifo_data_shard_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = bn_checkpoint(dir.path(), 4, 0, |_| {});
    let shard = with_suffix(&prefix, ".data-00000-of-00001");
    std::fs::remove_file(&shard).unwrap();
    mkfifo(&shard);
    // Library: a typed error naming the shard, without blocking.
    match Bundle::open(&prefix) {
        Err(Error::FileNotRegular { path, kind }) => {
            assert_eq!(path, shard);
            assert_eq!(kind, "a FIFO");
        }
        other => panic!("{other:?}"),
    }
    // The command line: exit 2 at once (it used to block in open()).
    let o = tfbn_env(
        &["inspect", prefix.to_str().unwrap()],
        &[],
        Duration::from_secs(20),
    );
    assert_bad_input(&o, &[shard.to_str().unwrap(), "FIFO", "not a regular file"]);
}

#[test]
fn fault_03_fifo_saved_model_and_checkpoint_state_files_are_refused() {
    // A `checkpoint` state file that is a FIFO: resolution skips it (it is
    // not a file) and finds the one .index instead, without blocking.
    let dir = tempfile::tempdir().unwrap();
    bn_checkpoint(dir.path(), 4, 0, |_| {});
    mkfifo(&dir.path().join("checkpoint"));
    let o = tfbn_env(
        &["inspect", dir.path().to_str().unwrap()],
        &[],
        Duration::from_secs(20),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // keras_metadata.pb as a FIFO beside a saved_model.pb.
    let sm = tempfile::tempdir().unwrap();
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/tfkeras_savedmodel/savedmodel");
    std::fs::copy(
        fixture.join("saved_model.pb"),
        sm.path().join("saved_model.pb"),
    )
    .unwrap();
    mkfifo(&sm.path().join("keras_metadata.pb"));
    match tfbn::testing::savedmodel::SavedModel::open(sm.path()) {
        Err(Error::FileNotRegular { path, .. }) => assert!(path.ends_with("keras_metadata.pb")),
        Err(other) => panic!("{other}"),
        Ok(_) => panic!("opened"),
    }
}

// ---- fault 4: slices without their full-tensor entry -------------------------

#[test]
fn fault_04_orphan_slices_are_an_error_naming_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    // Control: the partitioned beta reads back whole.
    let ok = tempfile::tempdir().unwrap();
    let good = bn_checkpoint(ok.path(), 4, 2, |_| {});
    let b = Bundle::open(&good).unwrap();
    assert!(b.entry("bn/beta").unwrap().partitioned);
    assert_eq!(
        b.read("bn/beta").unwrap(),
        f32s(&[4], &[10.0, 11.0, 12.0, 13.0])
    );
    // The full entry `bn/beta` dropped; its two slice entries remain.
    let prefix = bn_checkpoint(dir.path(), 4, 2, |pairs| {
        let before = pairs.len();
        pairs.retain(|(k, v)| {
            let full = k.as_slice() == b"bn/beta";
            if full {
                assert!(!BundleEntryProto::decode(&v[..]).unwrap().slices.is_empty());
            }
            !full
        });
        assert_eq!(pairs.len(), before - 1);
    });
    match Bundle::open(&prefix) {
        Err(Error::SliceOrphaned {
            variable, count, ..
        }) => {
            assert_eq!(variable, "bn/beta");
            assert_eq!(count, 2);
        }
        other => panic!("{other:?}"),
    }
    // Every command that reads it says so (exit 2) instead of exporting
    // bias = zeros or "0 skipped".
    let p = prefix.to_str().unwrap();
    let out = dir.path().join("out.safetensors");
    let o = dir.path().join("o2.safetensors");
    for args in [
        vec!["inspect", p],
        vec![
            "export",
            p,
            "-o",
            out.to_str().unwrap(),
            "--preset",
            "pytorch",
        ],
        vec!["export", p, "-o", o.to_str().unwrap(), "--all-variables"],
    ] {
        let r = tfbn(&args);
        assert_bad_input(&r, &["bn/beta", "no full-tensor entry", "model.ckpt.index"]);
    }
    assert!(!out.exists() && !o.exists());
}

#[test]
fn fault_04_extra_slice_of_a_listed_variable_is_an_error() {
    // A third slice entry the full entry does not list.
    let dir = tempfile::tempdir().unwrap();
    let mut extra = None;
    let _ = bn_checkpoint(dir.path(), 4, 2, |pairs| {
        let (k, v) = pairs.iter().find(|(k, _)| k.first() == Some(&0)).unwrap();
        let mut k = k.clone();
        // Same variable, another (unlisted) extent: change the length byte
        // of the encoded key's last extent by rewriting the key.
        let (name, mut ext) = tfbn::testing::bundle::decode_slice_key(&k).unwrap();
        ext[0].length = Some(1);
        k = tfbn::testing::bundle::encode_slice_key(&name, &ext);
        extra = Some((k, v.clone()));
    });
    let dir2 = tempfile::tempdir().unwrap();
    let (k, v) = extra.unwrap();
    let prefix = bn_checkpoint(dir2.path(), 4, 2, move |pairs| {
        pairs.push((k, v));
        pairs.sort();
    });
    match Bundle::open(&prefix) {
        Err(Error::SliceOrphaned { variable, .. }) => assert_eq!(variable, "bn/beta"),
        other => panic!("{other:?}"),
    }
}

// ---- fault 5: apply --input that is not a .npy ------------------------------

/// The address space a child gets in [`tfbn_capped`]: what reading a
/// multi-GiB input into memory would exceed (it then dies of a failed
/// allocation instead of exiting 2).
const ADDRESS_SPACE_CAP: u64 = 1 << 30;

/// Runs `tfbn` with its address space capped at [`ADDRESS_SPACE_CAP`] and
/// returns its status and stderr. (A cap rather than a measurement: the
/// peak resident size `wait4` reports for a child started from this
/// multi-threaded test process includes the parent's pages at the spawn,
/// which other tests running in parallel make arbitrarily large.)
#[allow(clippy::zombie_processes)] // reaped by wait4, which std cannot see
fn tfbn_capped(args: &[&str]) -> (Option<i32>, String) {
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().unwrap();
    let err_path = dir.path().join("stderr");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tfbn"));
    // SAFETY: setrlimit is async-signal-safe; nothing else runs between
    // fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: ADDRESS_SPACE_CAP,
                rlim_max: ADDRESS_SPACE_CAP,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    let pid = child.id() as libc::pid_t;
    let start = Instant::now();
    let mut status = 0;
    // SAFETY: plain syscalls on our own child; rusage is plain data.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut ru) };
        if r == pid {
            break;
        }
        assert!(r == 0, "wait4 failed");
        if start.elapsed() > Duration::from_secs(30) {
            unsafe { libc::kill(pid, libc::SIGKILL) };
            panic!("tfbn {args:?}: still running after 30 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
    let err = std::fs::read_to_string(&err_path).unwrap();
    (code, err)
}

#[test]
fn fault_05_apply_refuses_devices_and_huge_non_npy_inputs_without_reading_them() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = bn_checkpoint(dir.path(), 4, 0, |_| {});
    let p = prefix.to_str().unwrap();
    let out = dir.path().join("out");
    let o = out.to_str().unwrap();
    let apply =
        |input: &str| tfbn_capped(&["apply", p, "--layer", "bn", "--input", input, "-o", o]);
    // Devices: refused by type, before a byte is read.
    for dev in ["/dev/zero", "/dev/urandom"] {
        let (code, err) = apply(dev);
        assert_eq!(code, Some(2), "{dev}: {err}");
        assert!(
            err.contains(dev) && err.contains("character device"),
            "{err}"
        );
    }
    // A FIFO (nobody writes to it): refused, not waited on.
    let fifo = dir.path().join("x.npy");
    mkfifo(&fifo);
    let (code, err) = apply(fifo.to_str().unwrap());
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("FIFO"), "{err}");
    // A 16 GiB (sparse) file that is not a .npy: the magic is checked
    // after 12 bytes.
    let huge = dir.path().join("huge.npy");
    std::fs::File::create(&huge)
        .unwrap()
        .set_len(16 << 30)
        .unwrap();
    let (code, err) = apply(huge.to_str().unwrap());
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("huge.npy") && err.contains("magic"), "{err}");
    // A valid header whose shape needs more data than the file holds:
    // refused before the data is allocated or read.
    let mut lie = b"\x93NUMPY\x01\x00".to_vec();
    let mut dict = b"{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000, 4), }".to_vec();
    while (10 + dict.len() + 1) % 64 != 0 {
        dict.push(b' ');
    }
    dict.push(b'\n');
    lie.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    lie.extend_from_slice(&dict);
    lie.extend_from_slice(&[0u8; 64]);
    let liar = dir.path().join("liar.npy");
    std::fs::write(&liar, &lie).unwrap();
    let (code, err) = apply(liar.to_str().unwrap());
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("needs 16000000000 data bytes, the file has 64"),
        "{err}"
    );
    assert!(!out.join("y.npy").exists());
}

// ---- fault 6: an output that is one of the input's own files ---------------

/// A copy of the `tf1_trained` fixture (index, data, .meta, checkpoint).
fn tf1_copy(dir: &Path) -> PathBuf {
    let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/tf1_trained/ckpt");
    let to = dir.join("ckpt");
    std::fs::create_dir(&to).unwrap();
    for e in std::fs::read_dir(&from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
    to.join("model.ckpt")
}

#[test]
fn fault_06_export_onto_an_input_file_is_refused_even_with_force() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = tf1_copy(dir.path());
    let p = prefix.to_str().unwrap();
    let ckpt_dir = prefix.parent().unwrap();
    // Other names for the same files: a symlink and a hard link.
    let sym = dir.path().join("sym.safetensors");
    std::os::unix::fs::symlink(with_suffix(&prefix, ".index"), &sym).unwrap();
    let hard = dir.path().join("hard.safetensors");
    std::fs::hard_link(with_suffix(&prefix, ".data-00000-of-00001"), &hard).unwrap();
    let targets = [
        with_suffix(&prefix, ".index"),
        with_suffix(&prefix, ".data-00000-of-00001"),
        with_suffix(&prefix, ".meta"),
        ckpt_dir.join("checkpoint"),
        sym,
        hard,
    ];
    let before: Vec<Vec<u8>> = targets.iter().map(|t| std::fs::read(t).unwrap()).collect();
    for (t, bytes) in targets.iter().zip(&before) {
        for extra in [
            &["--force"][..],
            &[][..],
            &["--all-variables", "--force"][..],
        ] {
            let mut args = vec!["export", p, "-o", t.to_str().unwrap()];
            args.extend_from_slice(extra);
            let o = tfbn(&args);
            assert_bad_input(&o, &[t.to_str().unwrap(), "is the input file"]);
            assert_eq!(&std::fs::read(t).unwrap(), bytes, "{} changed", t.display());
        }
    }
    // The checkpoint still reads, and a real export still works.
    let out = dir.path().join("ok.safetensors");
    let o = tfbn(&["export", p, "-o", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // The library refuses it too (for callers other than the CLI).
    let source = tfbn::source::Source::open(&prefix).unwrap();
    let plan = tfbn::export::plan_layers(&source, &Default::default()).unwrap();
    let policy = tfbn::export::writer::OutputPolicy {
        force: true,
        sync: false,
    };
    match tfbn::export::write_plan(&source, &plan, &targets[0], policy, &mut |_, _| {}) {
        Err(Error::OutputIsInput { input, .. }) => assert_eq!(input, targets[0]),
        other => panic!("{other:?}"),
    }
}

// ---- fault 7: two exports racing for one output -------------------------------

#[test]
fn fault_07_no_clobber_is_atomic_in_the_library() {
    // Another writer creates the output while this one writes its temp
    // file: the final move must not replace it.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o.bin");
    let policy = tfbn::export::writer::OutputPolicy {
        force: false,
        sync: false,
    };
    let r = tfbn::export::writer::write_atomic(&out, policy, |w| {
        std::fs::write(&out, b"the other writer's").unwrap();
        w.write_all(b"mine")?;
        Ok(())
    });
    assert!(matches!(r, Err(Error::OutputExists { .. })), "{r:?}");
    assert_eq!(std::fs::read(&out).unwrap(), b"the other writer's");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "temp file left"
    );
    // With force, replacing is the point.
    let forced = tfbn::export::writer::OutputPolicy {
        force: true,
        sync: false,
    };
    tfbn::export::writer::write_atomic(&out, forced, |w| {
        w.write_all(b"mine")?;
        Ok(())
    })
    .unwrap();
    assert_eq!(std::fs::read(&out).unwrap(), b"mine");
}

#[test]
fn fault_07_two_exports_to_one_output_exactly_one_wins() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = tf1_copy(dir.path());
    let out = dir.path().join("race.safetensors");
    // Both pass the early existence check, then stall with a complete temp
    // file before moving it into place (debug builds only).
    let spawn = |preset: &str| {
        Command::new(env!("CARGO_BIN_EXE_tfbn"))
            .args([
                "export",
                prefix.to_str().unwrap(),
                "-o",
                out.to_str().unwrap(),
            ])
            .args(["--preset", preset, "--no-sync"])
            .env("TFBN_DEBUG_STALL_MS", "1500")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let a = spawn("tf");
    let b = spawn("pytorch");
    let a = wait_limited(a, Duration::from_secs(60), "export a");
    let b = wait_limited(b, Duration::from_secs(60), "export b");
    let codes = [a.status.code(), b.status.code()];
    assert!(
        codes == [Some(0), Some(2)] || codes == [Some(2), Some(0)],
        "{codes:?}: {} / {}",
        stderr(&a),
        stderr(&b)
    );
    let loser = if codes[0] == Some(2) { &a } else { &b };
    assert_bad_input(loser, &["race.safetensors", "already exists"]);
    // The winner's file is whole, and no temp file is left.
    let report = tfbn::export::describe::describe(&out).unwrap();
    let winner = if codes[0] == Some(0) { "tf" } else { "pytorch" };
    assert_eq!(report.metadata["tfbn.preset"], winner);
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!names.iter().any(|n| n.contains("tfbn-tmp")), "{names:?}");
}

// ---- fault 8: signals during an export ----------------------------------------

fn temp_files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains(".tfbn-tmp-"))
        .collect()
}

/// Starts an export that stalls with its temp file complete, and waits
/// until the temp file is there.
fn stalled_export(prefix: &Path, out: &Path) -> Child {
    let child = Command::new(env!("CARGO_BIN_EXE_tfbn"))
        .args([
            "export",
            prefix.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ])
        .args(["--all-variables", "--no-sync"])
        .env("TFBN_DEBUG_STALL_MS", "20000")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let dir = out.parent().unwrap();
    while temp_files(dir).is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no temp file appeared"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child
}

#[test]
fn fault_08_sigint_and_sigterm_remove_the_temp_file() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = tf1_copy(dir.path());
    let outdir = dir.path().join("out");
    std::fs::create_dir(&outdir).unwrap();
    for (sig, status) in [(libc::SIGINT, 130), (libc::SIGTERM, 143)] {
        let out = outdir.join("x.safetensors");
        let child = stalled_export(&prefix, &out);
        // SAFETY: a signal to our own child.
        assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, sig) }, 0);
        let o = wait_limited(child, Duration::from_secs(20), "interrupted export");
        assert_eq!(code(o.status), Some(status), "{}", stderr(&o));
        assert!(
            stderr(&o).contains("removed 1 temporary file"),
            "{}",
            stderr(&o)
        );
        assert!(temp_files(&outdir).is_empty(), "{:?}", temp_files(&outdir));
        assert!(!out.exists());
    }
}

#[test]
fn fault_08_kill_9_leftovers_are_swept_by_the_next_export() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = tf1_copy(dir.path());
    let outdir = dir.path().join("out");
    std::fs::create_dir(&outdir).unwrap();
    let out = outdir.join("x.safetensors");
    let mut child = stalled_export(&prefix, &out);
    child.kill().unwrap(); // SIGKILL: nothing can be cleaned up now
    child.wait().unwrap();
    let left = temp_files(&outdir);
    assert_eq!(left.len(), 1, "{left:?}");
    // A live process's temp file (this test's own id) is left alone.
    let live = outdir.join(format!(".y.tfbn-tmp-{}-0", std::process::id()));
    std::fs::write(&live, b"busy").unwrap();
    // The next export into the folder (any name) removes the dead one's.
    let other = outdir.join("other.safetensors");
    let o = tfbn(&[
        "export",
        prefix.to_str().unwrap(),
        "-o",
        other.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(temp_files(&outdir), vec![live]);
    assert!(other.exists() && !out.exists());
}

// ---- fault 11: messages -----------------------------------------------------

/// A `.npy` of float64 ones (version 1.0 header).
fn npy_f64(path: &Path, shape: &[usize]) {
    let n: usize = shape.iter().product();
    let a = ndarray::ArrayD::from_shape_vec(shape.to_vec(), vec![1.0f64; n]).unwrap();
    tfbn::testing::npy::write_npy(path, &tfbn::testing::npy::NpyArray::F64(a)).unwrap();
}

#[test]
fn fault_11_apply_errors_name_the_file_the_layer_and_the_one_broken_rule() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = tf1_copy(dir.path());
    let p = prefix.to_str().unwrap();
    let x = dir.path().join("x64.npy");
    npy_f64(&x, &[2, 4, 4, 8]);
    let xs = x.to_str().unwrap();
    let out = dir.path().join("out");
    let o = out.to_str().unwrap();
    let layer = "batch_normalization"; // a fused op in the graph
                                       // A graph's fused op leaves the choice to TF's rule, which runs a
                                       // float64 input non-fused: apply does the same.
    let r = tfbn(&["apply", p, "--layer", layer, "--input", xs, "-o", o]);
    assert_eq!(r.status.code(), Some(0), "{}", stderr(&r));
    // An explicit fused=True on a float64 input: only the reason that holds,
    // not a list of every condition with its truth value.
    let cfg = tfbn::bn::BnConfig {
        fused: Some(true),
        api: tfbn::bn::BnApi::TfKeras,
        ..Default::default()
    };
    let params = tfbn::bn::BnParams {
        gamma: Some(vec![1.0; 8]),
        beta: Some(vec![0.0; 8]),
        moving_mean: vec![0.0; 8],
        moving_variance: vec![1.0; 8],
        renorm: None,
    };
    let x64 = tfbn::FloatArray::F64(ndarray::ArrayD::zeros(vec![2, 4, 4, 8]));
    let Err(e) = tfbn::bn::inference(&cfg, &params, &x64) else {
        panic!("fused=True refuses float64")
    };
    let line = e.to_string();
    assert!(line.contains("float64"), "{line}");
    assert!(
        !line.contains("renorm") && !line.contains("virtual"),
        "{line}"
    );
    let _ = std::fs::remove_dir_all(&out);
    // Errors from the layer's arithmetic name checkpoint, layer and input.
    let r = tfbn(&[
        "apply", p, "--layer", layer, "--input", xs, "-o", o, "--axis", "7",
    ]);
    assert_bad_input(&r, &[p, "layer batch_normalization", xs, "axis 7"]);
    let r = tfbn(&["apply", p, "--layer", "nope", "--input", xs, "-o", o]);
    assert_bad_input(&r, &[p, "no batch-norm layer named \"nope\""]);
    // -o is a folder for apply: a file there is named as such.
    let r = tfbn(&["apply", p, "--layer", layer, "--input", xs, "-o", xs]);
    assert_bad_input(&r, &[xs, "is a regular file", "folder"]);
    // An output that is the input.
    let y = dir.path().join("y.npy");
    std::fs::copy(&x, &y).unwrap();
    let before = std::fs::read(&y).unwrap();
    let d = dir.path().to_str().unwrap();
    let r = tfbn(&[
        "apply",
        p,
        "--layer",
        "batch_normalization_2",
        "--input",
        y.to_str().unwrap(),
        "-o",
        d,
    ]);
    assert_bad_input(&r, &["y.npy", "is the input file"]);
    assert_eq!(std::fs::read(&y).unwrap(), before);
}

#[test]
fn fault_11_export_to_a_folder_says_so_instead_of_suggesting_force() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = tf1_copy(dir.path());
    let target = dir.path().join("looks_like.safetensors");
    std::fs::create_dir(&target).unwrap();
    for force in [false, true] {
        let mut args = vec![
            "export",
            prefix.to_str().unwrap(),
            "-o",
            target.to_str().unwrap(),
        ];
        if force {
            args.push("--force");
        }
        let line = assert_bad_input(&tfbn(&args), &[target.to_str().unwrap(), "is a folder"]);
        assert!(!line.contains("--force"), "{line}");
    }
    assert!(target.is_dir());
}
