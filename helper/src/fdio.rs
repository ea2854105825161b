//! The one place the helper touches raw file descriptors: the socketpair end the plugin passes to
//! the supervisor and the relay as an inherited fd number.
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

mod libc_sflag {
    pub const S_IFMT: u32 = 0o170000;
    pub const S_IFSOCK: u32 = 0o140000;
}
