//! The one place the helper touches raw file descriptors and process-wide signal dispositions:
//! the socketpair end the plugin passes to the supervisor and the relay as an inherited fd number,
//! and the report commands' stdout.
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;

/// Take ownership of inherited fd `fd` as a Unix stream socket. Fails unless `fd` is open and a
/// socket, so a wrong `--fd` is an error rather than undefined behaviour on someone else's fd.
pub fn inherited_socket(fd: i32) -> std::io::Result<UnixStream> {
    if fd < 3 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "fd must be >= 3",
        ));
    }
    let st = nix::sys::stat::fstat(fd).map_err(std::io::Error::from)?;
    if st.st_mode & libc_sflag::S_IFMT != libc_sflag::S_IFSOCK {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("fd {fd} is not a socket"),
        ));
    }
    // SAFETY: fd is open (fstat succeeded), is a socket, and was handed to this process for its
    // exclusive use by the plugin; nothing else in the process owns it.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    Ok(UnixStream::from(owned))
}

/// For commands that only print a report (`status`, `list`, `gc`, `man`): a reader that stops
/// early (`| head`, `| grep -q`) ends the command quietly, as it would `ls`, instead of a panic
/// in `println!` and a failed pipeline. Not for the supervisor or the relay, whose sockets must
/// report a gone peer as an error rather than kill the process.
pub fn quiet_on_closed_stdout() {
    use nix::sys::signal::{signal, SigHandler, Signal};
    // SAFETY: SIG_DFL installs no handler code; called at the start of a single-threaded
    // command before anything else runs.
    let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) };
}

mod libc_sflag {
    pub const S_IFMT: u32 = 0o170000;
    pub const S_IFSOCK: u32 = 0o140000;
}
