//! Terminals for containers (`run -t`, `exec -t`), Linux only. The pseudo-terminal is taken
//! from the container's own devpts instance (mounted `newinstance,ptmxmode=0666` by `setup`),
//! so inside the container `tty` names `/dev/pts/N` and that file exists there. The init
//! process opens it after pivot_root and hands the master side back to the monitor over a unix
//! socket with SCM_RIGHTS, as runc's console socket does; the exec helper, already in the
//! container's mount namespace, opens it directly.
//!
//! The fd passing is written against libc because the runtime's nix build carries no socket
//! support, and the two calls are short.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

pub use nix::pty::Winsize;

/// What the container's init needs to give itself a terminal: the socket on which the master
/// goes back to the monitor, and the caller's window size.
#[derive(Clone, Copy, Debug)]
pub struct Console {
    pub socket: RawFd,
    pub size: Option<Winsize>,
}

/// Opens a new terminal pair in the devpts instance at `/dev/pts` of the current root; both
/// ends are close-on-exec. `size` is applied to it.
pub fn open_in_root(size: Option<&Winsize>) -> Result<(OwnedFd, OwnedFd), String> {
    let path = c"/dev/pts/ptmx";
    // SAFETY: open(2) with a static C string; the result is checked before it is owned.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC | libc::O_NOFOLLOW) };
    if fd < 0 {
        return Err(format!("opening /dev/pts/ptmx in the container: {}", io::Error::last_os_error()));
    }
    // SAFETY: fd was just returned by open and nothing else owns it.
    let master = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut number: libc::c_uint = 0;
    // Only a pty master answers TIOCGPTN: whatever else a container may have put at that path
    // is refused here.
    // SAFETY: TIOCGPTN writes one unsigned int into `number`.
    if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGPTN, &mut number) } < 0 {
        return Err(format!("/dev/pts/ptmx in the container is not a terminal master: {}", io::Error::last_os_error()));
    }
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK reads one int.
    if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) } < 0 {
        return Err(format!("unlocking terminal {number}: {}", io::Error::last_os_error()));
    }
    let slave = open_peer(&master, number)?;
    if let Some(size) = size {
        set_size(&master, size);
    }
    Ok((master, slave))
}

/// Makes `slave` the standard streams and the controlling terminal of this process, which must
/// lead a session without one (it called setsid).
pub fn make_controlling(slave: &OwnedFd) -> Result<(), String> {
    for target in 0..3 {
        // SAFETY: dup2 onto a standard stream; the source stays open.
        if unsafe { libc::dup2(slave.as_raw_fd(), target) } < 0 {
            return Err(format!("making the terminal fd {target}: {}", io::Error::last_os_error()));
        }
    }
    // SAFETY: TIOCSCTTY takes an int argument (0: do not steal it from another session).
    if unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) } < 0 {
        return Err(format!("making the terminal the controlling one: {}", io::Error::last_os_error()));
    }
    Ok(())
}

/// Gives the container's init process its terminal: opens it in the container's devpts, makes
/// it stdin, stdout, stderr and the controlling terminal, and sends the master to the monitor.
pub fn attach_init(console: &Console) -> Result<(), String> {
    let (master, slave) = open_in_root(console.size.as_ref())?;
    make_controlling(&slave)?;
    send_fd(console.socket, master.as_raw_fd()).map_err(|e| format!("passing the terminal to the monitor: {e}"))
}

/// The window size of the first of `fds` that is a terminal.
pub fn size_of_any(fds: &[RawFd]) -> Option<Winsize> {
    fds.iter().find_map(|fd| {
        let mut size = Winsize { ws_row: 0, ws_col: 0, ws_xpixel: 0, ws_ypixel: 0 };
        // SAFETY: TIOCGWINSZ fills the Winsize; on a non-terminal it fails and we skip it.
        let ok = unsafe { libc::ioctl(*fd, libc::TIOCGWINSZ, &mut size) } == 0;
        (ok && size.ws_row > 0).then_some(size)
    })
}

/// Sets the window size of a terminal (errors are ignored: a wrong size is cosmetic).
pub fn set_size(fd: &OwnedFd, size: &Winsize) {
    // SAFETY: TIOCSWINSZ reads one Winsize.
    unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, size as *const Winsize) };
}

/// Parses `ROWSxCOLS`, the form sizes travel in through the environment.
pub fn parse_size(text: &str) -> Option<Winsize> {
    let (rows, cols) = text.split_once('x')?;
    Some(Winsize { ws_row: rows.parse().ok()?, ws_col: cols.parse().ok()?, ws_xpixel: 0, ws_ypixel: 0 })
}

/// Sends one descriptor over a unix socket (SCM_RIGHTS) with a one-byte message.
pub fn send_fd(socket: RawFd, fd: RawFd) -> io::Result<()> {
    let mut byte = [b'T'];
    let mut iov = libc::iovec { iov_base: byte.as_mut_ptr().cast(), iov_len: 1 };
    // u64 elements keep the buffer aligned for cmsghdr.
    let mut control = [0u64; 8];
    // SAFETY: CMSG_SPACE only computes a size.
    let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) } as usize;
    // SAFETY: an all-zero msghdr is valid; the pointers set below outlive the sendmsg call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = space as _;
    // SAFETY: the control buffer holds at least CMSG_SPACE(sizeof fd) bytes, so the first
    // header and its data fit; CMSG_* compute addresses inside it.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        if cmsg.is_null() {
            return Err(io::Error::other("no room for the control message"));
        }
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>(), fd);
    }
    loop {
        // SAFETY: msg points at live buffers set up above.
        let sent = unsafe { libc::sendmsg(socket, &msg, libc::MSG_NOSIGNAL) };
        if sent >= 0 {
            return Ok(());
        }
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
}

/// Receives one descriptor sent by [`send_fd`], made close-on-exec; `None` when the peer closed
/// the socket without sending one (it failed or executed its command first).
pub fn recv_fd(socket: RawFd) -> io::Result<Option<OwnedFd>> {
    let mut byte = [0u8];
    let mut iov = libc::iovec { iov_base: byte.as_mut_ptr().cast(), iov_len: 1 };
    let mut control = [0u64; 8];
    // SAFETY: an all-zero msghdr is valid; the pointers set below outlive the recvmsg call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    let received = loop {
        // SAFETY: msg points at live buffers set up above.
        let n = unsafe { libc::recvmsg(socket, &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n >= 0 {
            break n;
        }
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::Interrupted {
            return Err(error);
        }
    };
    if received == 0 {
        return Ok(None);
    }
    let mut found = None;
    // SAFETY: the kernel filled msg_control up to msg_controllen; CMSG_FIRSTHDR/NXTHDR stay
    // within it, and an SCM_RIGHTS message carries whole ints.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let fd = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>());
                let owned = OwnedFd::from_raw_fd(fd);
                // Only one is expected; any further one is closed by being dropped.
                if found.is_none() {
                    found = Some(owned);
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    Ok(found)
}

/// The slave side of `master`, through TIOCGPTPEER (no path lookup inside the container),
/// else by its name for kernels before 4.13.
fn open_peer(master: &OwnedFd, number: libc::c_uint) -> Result<OwnedFd, String> {
    let flags = libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC;
    // SAFETY: TIOCGPTPEER takes the open flags and returns a new descriptor or -1.
    let fd = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGPTPEER, flags) };
    if fd >= 0 {
        // SAFETY: a descriptor just returned by the kernel, owned by nobody else.
        return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
    }
    let path = std::ffi::CString::new(format!("/dev/pts/{number}")).map_err(|e| e.to_string())?;
    // SAFETY: open(2) with a valid C string.
    let fd = unsafe { libc::open(path.as_ptr(), flags | libc::O_NOFOLLOW) };
    if fd < 0 {
        return Err(format!("opening /dev/pts/{number}: {}", io::Error::last_os_error()));
    }
    // SAFETY: as above.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_from_the_environment_form() {
        let size = parse_size("40x120").expect("size");
        assert_eq!((size.ws_row, size.ws_col), (40, 120));
        assert!(parse_size("40").is_none());
        assert!(parse_size("ax1").is_none());
    }

    #[test]
    fn descriptors_cross_a_unix_socket() {
        use std::io::{Read, Write};
        let (a, b) = std::os::unix::net::UnixStream::pair().expect("socketpair");
        let (mut r, mut w) = std::os::unix::net::UnixStream::pair().expect("socketpair");
        send_fd(a.as_raw_fd(), w.as_raw_fd()).expect("send");
        let got = recv_fd(b.as_raw_fd()).expect("recv").expect("a descriptor");
        w.write_all(b"x").expect("write");
        drop(w);
        let mut passed = std::fs::File::from(got);
        passed.write_all(b"y").expect("write through the passed fd");
        drop(passed);
        let mut text = String::new();
        r.read_to_string(&mut text).expect("read");
        assert_eq!(text, "xy");
        drop(a);
        assert!(recv_fd(b.as_raw_fd()).expect("recv").is_none(), "a closed peer sends none");
    }
}
