//! Process plumbing that needs `unsafe`: fork/exec of the helper, descriptor juggling, process
//! groups. Kept apart from `ffi` (Slurm's API) and as small as possible. No threads anywhere:
//! slurmstepd forks after loading the plugin.

use std::ffi::{c_char, CString};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use crate::helper_argv::SUPERVISOR_FD;

/// Our descriptors are moved at or above this number before fork, so that the child's dup2 onto
/// 0..=3 can never overwrite one of them, and the task's end survives Slurm's later stdio dup2.
const FD_FLOOR: RawFd = 10;

/// Starting or running a helper process failed.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("{call} failed: {err}")]
    Os { call: &'static str, err: io::Error },
    #[error("cannot execute {path}: {err}")]
    Exec { path: String, err: io::Error },
    #[error("{what} contains a NUL byte")]
    Nul { what: &'static str },
}

fn os(call: &'static str) -> impl FnOnce(io::Error) -> SpawnError {
    move |err| SpawnError::Os { call, err }
}

fn last_os(call: &'static str) -> SpawnError {
    SpawnError::Os {
        call,
        err: io::Error::last_os_error(),
    }
}

/// C strings and the NULL-terminated pointer array execve wants, built before fork because the
/// child may not allocate.
struct CArgs {
    _strings: Vec<CString>,
    ptrs: Vec<*const c_char>,
}

impl CArgs {
    fn new(what: &'static str, items: &[String]) -> Result<CArgs, SpawnError> {
        let strings = items
            .iter()
            .map(|s| CString::new(s.as_bytes()).map_err(|_| SpawnError::Nul { what }))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(CArgs::from_cstrings(strings))
    }

    fn from_cstrings(strings: Vec<CString>) -> CArgs {
        let mut ptrs: Vec<*const c_char> = strings.iter().map(|c| c.as_ptr()).collect();
        ptrs.push(std::ptr::null());
        CArgs {
            _strings: strings,
            ptrs,
        }
    }
}

/// The task's end of the socket to a freshly started supervisor.
#[derive(Debug)]
pub struct Supervisor {
    /// Not close-on-exec: the relay inherits it.
    pub task_fd: RawFd,
    /// The (already reaped) middle process of the double fork, for logs; the supervisor is its child.
    pub pid: i32,
}

/// Starts `path argv` as a session leader with a socket on fd 3, stdio on /dev/null, the signal
/// mask and dispositions reset and every other descriptor closed; `env` is its whole environment.
/// Returns once the exec succeeded (or reports why it did not), so the task never waits on a
/// helper that is not there.
pub fn spawn_supervisor(
    path: &str,
    argv: &[String],
    env: &[String],
) -> Result<Supervisor, SpawnError> {
    let cpath = CString::new(path).map_err(|_| SpawnError::Nul {
        what: "helper path",
    })?;
    let cargv = CArgs::new("helper argument", argv)?;
    let cenv = CArgs::new("helper environment", env)?;

    let (task_end, helper_end) = UnixStream::pair().map_err(os("socketpair"))?;
    let task_end = above_floor(OwnedFd::from(task_end))?;
    let helper_end = above_floor(OwnedFd::from(helper_end))?;
    let devnull = above_floor(OwnedFd::from(
        File::options()
            .read(true)
            .write(true)
            .open("/dev/null")
            .map_err(os("open /dev/null"))?,
    ))?;
    let (err_read, err_write) = cloexec_pipe()?;
    let err_write = above_floor(err_write)?;
    let max_fd = fd_limit();

    // SAFETY: the child only makes async-signal-safe calls on memory prepared above, then execs
    // or _exits (see `child_exec`); the parent continues normally.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(last_os("fork"));
    }
    if pid == 0 {
        // SAFETY: we are the freshly forked child; never returns.
        unsafe {
            child_exec(
                &cpath,
                &cargv,
                &cenv,
                helper_end.as_raw_fd(),
                devnull.as_raw_fd(),
                err_write.as_raw_fd(),
                max_fd,
            )
        }
    }
    drop(err_write);
    drop(helper_end);
    drop(devnull);

    // The pipe closes on a successful exec (close-on-exec), or carries errno if exec failed.
    let mut errno_bytes = [0u8; 4];
    let mut got = 0usize;
    let mut err_file = File::from(err_read);
    while got < errno_bytes.len() {
        match err_file.read(&mut errno_bytes[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                return Err(SpawnError::Os {
                    call: "read exec status",
                    err: e,
                })
            }
        }
    }
    // The middle process of the double fork exits at once (or after a failed exec).
    reap(pid);
    if got > 0 {
        let errno = i32::from_ne_bytes(errno_bytes);
        return Err(SpawnError::Exec {
            path: path.to_string(),
            err: io::Error::from_raw_os_error(errno),
        });
    }
    clear_cloexec(task_end.as_raw_fd())?;
    Ok(Supervisor {
        task_fd: task_end.into_raw_fd(),
        pid,
    })
}

/// The forked child: only async-signal-safe calls from here on.
///
/// # Safety
/// Must be called only in the child right after fork, with valid descriptors.
unsafe fn child_exec(
    path: &CString,
    argv: &CArgs,
    env: &CArgs,
    helper_fd: RawFd,
    devnull: RawFd,
    err_write: RawFd,
    max_fd: RawFd,
) -> ! {
    fn fail(err_write: RawFd) -> ! {
        let errno = io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO)
            .to_ne_bytes();
        // SAFETY: write(2) and _exit(2) are async-signal-safe; the buffer is on our stack.
        unsafe {
            libc::write(err_write, errno.as_ptr().cast(), errno.len());
            libc::_exit(127)
        }
    }
    // SAFETY: plain syscalls on descriptors and signal state owned by this child.
    unsafe {
        // Own session: the task's terminal signals are the relay's business, not the supervisor's.
        libc::setsid();
        // Fork again and let the middle process exit: the supervisor is reparented away from the
        // task, so process tracking by descent (proctrack/linuxproc, pgid) no longer counts it as
        // part of the step. Slurm SIGSTOPs a step's processes 2 s after SIGTSTP on suspend; a
        // stopped supervisor could not pause its container or act on the resume.
        match libc::fork() {
            0 => {}
            p if p > 0 => libc::_exit(0),
            _ => fail(err_write),
        }
        // slurmstepd blocks signals in the task until just before exec; exec keeps the mask.
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
        // Ignored signals stay ignored across exec (glibc refuses its reserved 32/33: harmless).
        for sig in 1..=64 {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::signal(sig, libc::SIG_DFL);
            }
        }
        for target in 0..=2 {
            if libc::dup2(devnull, target) < 0 {
                fail(err_write);
            }
        }
        if libc::dup2(helper_fd, SUPERVISOR_FD) < 0 {
            fail(err_write);
        }
        // Mark the rest close-on-exec rather than closing it, so err_write survives until exec.
        if libc::syscall(
            libc::SYS_close_range,
            SUPERVISOR_FD + 1,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        ) != 0
        {
            // Kernels before 5.11: one fcntl per possible descriptor.
            for fd in (SUPERVISOR_FD + 1)..max_fd {
                libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
            }
        }
        libc::execve(path.as_ptr(), argv.ptrs.as_ptr(), env.ptrs.as_ptr());
    }
    fail(err_write)
}

/// Replaces the current process (the task) with `path argv`, environment `env`. Returns only
/// on failure.
pub fn exec(path: &str, argv: &[String], env: Vec<CString>) -> SpawnError {
    let cpath = match CString::new(path) {
        Ok(c) => c,
        Err(_) => {
            return SpawnError::Nul {
                what: "helper path",
            }
        }
    };
    let cargv = match CArgs::new("helper argument", argv) {
        Ok(a) => a,
        Err(e) => return e,
    };
    let cenv = CArgs::from_cstrings(env);
    // SAFETY: NULL-terminated arrays of valid C strings that outlive the call.
    unsafe { libc::execve(cpath.as_ptr(), cargv.ptrs.as_ptr(), cenv.ptrs.as_ptr()) };
    SpawnError::Exec {
        path: path.to_string(),
        err: io::Error::last_os_error(),
    }
}

/// An anonymous in-memory file (to capture a helper's output without threads or temp files).
pub fn anonymous_file(name: &str) -> Result<File, SpawnError> {
    let cname = CString::new(name).map_err(|_| SpawnError::Nul { what: "memfd name" })?;
    // SAFETY: memfd_create takes a C string and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::memfd_create(cname.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(last_os("memfd_create"));
    }
    // SAFETY: fd was just created and is owned by nobody else.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// SIGKILL to a whole process group (a helper started with `process_group(0)` and its children).
pub fn kill_process_group(pgid: u32) -> Result<(), SpawnError> {
    let pgid = libc::pid_t::try_from(pgid).map_err(|_| SpawnError::Os {
        call: "kill",
        err: io::Error::from_raw_os_error(libc::ESRCH),
    })?;
    // SAFETY: kill(2) with a negative pid targets exactly that process group.
    if unsafe { libc::kill(-pgid, libc::SIGKILL) } != 0 {
        return Err(last_os("kill"));
    }
    Ok(())
}

fn cloexec_pipe() -> Result<(OwnedFd, OwnedFd), SpawnError> {
    let mut fds: [libc::c_int; 2] = [-1, -1];
    // SAFETY: pipe2 writes two descriptors into the array on success.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(last_os("pipe2"));
    }
    // SAFETY: both descriptors are new and owned by us alone.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Moves `fd` to a number >= FD_FLOOR (close-on-exec).
fn above_floor(fd: OwnedFd) -> Result<OwnedFd, SpawnError> {
    if fd.as_raw_fd() >= FD_FLOOR {
        return Ok(fd);
    }
    // SAFETY: F_DUPFD_CLOEXEC returns a new descriptor or -1.
    let new = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, FD_FLOOR) };
    if new < 0 {
        return Err(last_os("fcntl(F_DUPFD_CLOEXEC)"));
    }
    // SAFETY: `new` was just created and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

fn clear_cloexec(fd: RawFd) -> Result<(), SpawnError> {
    // SAFETY: F_SETFD on a descriptor we own.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, 0) } != 0 {
        return Err(last_os("fcntl(F_SETFD)"));
    }
    Ok(())
}

/// Soft RLIMIT_NOFILE, capped: only used when close_range is unavailable.
fn fd_limit() -> RawFd {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills the struct.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) } == 0;
    let cur = if ok { rl.rlim_cur } else { 1024 };
    RawFd::try_from(cur.min(65_536)).unwrap_or(1024)
}

fn reap(pid: libc::pid_t) {
    loop {
        // SAFETY: waiting for our own child; status not needed.
        let rc = unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
        if rc >= 0 || io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(fd: RawFd) -> String {
        // SAFETY (test): we own fd, returned by spawn_supervisor.
        let mut f = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
        let mut s = String::new();
        f.read_to_string(&mut s).unwrap();
        s
    }

    fn fd_flags(fd: RawFd) -> u32 {
        let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).unwrap();
        let flags = info
            .lines()
            .find_map(|l| l.strip_prefix("flags:"))
            .unwrap()
            .trim();
        u32::from_str_radix(flags, 8).unwrap()
    }

    #[test]
    fn supervisor_gets_socket_on_fd3_and_a_clean_process() {
        let script = r#"
            printf 'path=%s;' "$PATH" >&3
            printf 'fds=' >&3; ls /proc/$$/fd >&3; printf ';' >&3
            printf 'sid=%s;pid=%s;' "$(cut -d' ' -f6 /proc/$$/stat)" "$$" >&3
            printf '%s;' "$(grep -E '^Sig(Blk|Ign)' /proc/$$/status | tr -d '\t' | tr '\n' ' ')" >&3
            printf 'stdin=%s' "$(readlink /proc/$$/fd/0)" >&3
        "#;
        let argv: Vec<String> = ["sh", "-c", script].iter().map(|s| s.to_string()).collect();
        // A descriptor without close-on-exec, as slurmstepd may leave around: must not leak.
        let mut leak: [libc::c_int; 2] = [-1, -1];
        // SAFETY (test): plain pipe/dup2 on descriptors this test owns.
        unsafe {
            assert_eq!(libc::pipe(leak.as_mut_ptr()), 0);
            assert!(libc::dup2(leak[0], 57) == 57);
        }
        let sup = spawn_supervisor("/bin/sh", &argv, &["PATH=/usr/bin:/bin".to_string()]).unwrap();
        // SAFETY (test): closing our own descriptors.
        unsafe {
            libc::close(leak[0]);
            libc::close(leak[1]);
            libc::close(57);
        }
        assert!(sup.task_fd >= FD_FLOOR);
        assert_eq!(
            fd_flags(sup.task_fd) & libc::O_CLOEXEC as u32,
            0,
            "task end must survive exec"
        );
        let out = read_all(sup.task_fd);
        reap(sup.pid);
        assert!(out.contains("path=/usr/bin:/bin;"), "{out}");
        let fds: Vec<&str> = out
            .split("fds=")
            .nth(1)
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .lines()
            .collect();
        for fd in ["0", "1", "2", "3"] {
            assert!(fds.contains(&fd), "{fd} open: {out}");
        }
        assert!(
            !fds.contains(&"57") && fds.len() <= 5,
            "nothing else inherited (dash keeps one of its own): {out}"
        );
        assert!(out.contains("SigBlk:0000000000000000"), "{out}");
        // Signals 1-31 (32/33 are glibc's own and may be inherited as ignored from the test runner).
        let ign = out
            .split("SigIgn:")
            .nth(1)
            .and_then(|s| s.get(..16))
            .unwrap();
        assert_eq!(
            u64::from_str_radix(ign, 16).unwrap() & 0x7fff_ffff,
            0,
            "{out}"
        );
        assert!(out.contains("stdin=/dev/null"), "{out}");
        let field = |k: &str| {
            out.split(';')
                .find_map(|p| p.strip_prefix(k))
                .unwrap()
                .to_string()
        };
        // Own session (created by the middle process of the double fork, so not its leader).
        // SAFETY (test): getsid(0) only reads our own session id.
        let own_sid = unsafe { libc::getsid(0) };
        assert_ne!(field("sid="), own_sid.to_string(), "own session: {out}");
        assert_ne!(field("sid="), field("pid="), "not a session leader: {out}");
    }

    #[test]
    fn exec_failure_is_reported_not_hung() {
        let err = spawn_supervisor("/nonexistent/slurm-ckpt", &["slurm-ckpt".to_string()], &[])
            .unwrap_err();
        match err {
            SpawnError::Exec { path, err } => {
                assert_eq!(path, "/nonexistent/slurm-ckpt");
                assert_eq!(err.kind(), io::ErrorKind::NotFound);
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(matches!(
            spawn_supervisor("/bin/sh", &["a\0b".to_string()], &[]),
            Err(SpawnError::Nul { .. })
        ));
    }

    #[test]
    fn anonymous_file_round_trip() {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = anonymous_file("test").unwrap();
        f.write_all(b"hello").unwrap();
        f.seek(SeekFrom::Start(0)).unwrap();
        let mut s = String::new();
        f.read_to_string(&mut s).unwrap();
        assert_eq!(s, "hello");
    }
}
