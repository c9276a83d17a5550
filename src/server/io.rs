//! The only place the reactor makes read and write syscalls.
//!
//! Every outcome of a nonblocking call is an [`IoStep`] variant, so each
//! `WouldBlock` is visible where it is handled; `Interrupted` is retried here.
//! The functions take any `Read`/`Write`, which is the seam a TLS stream will
//! slot into.

use std::io::{self, IoSlice, Read, Write};

/// The outcome of one nonblocking read or write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoStep {
    /// This many bytes were transferred (never 0).
    Progress(usize),
    /// The kernel has nothing for us / no room: wait for the next event.
    WouldBlock,
    /// The peer closed its sending side (reads), or the socket accepts no
    /// more bytes (writes).
    Eof,
}

/// One nonblocking read into `buf`.
pub fn read_step<S: Read>(stream: &mut S, buf: &mut [u8]) -> io::Result<IoStep> {
    loop {
        match stream.read(buf) {
            Ok(0) => return Ok(IoStep::Eof),
            Ok(n) => return Ok(IoStep::Progress(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(IoStep::WouldBlock),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// One nonblocking vectored write.
pub fn write_step<S: Write>(stream: &mut S, bufs: &[IoSlice<'_>]) -> io::Result<IoStep> {
    loop {
        match stream.write_vectored(bufs) {
            Ok(0) => return Ok(IoStep::Eof),
            Ok(n) => return Ok(IoStep::Progress(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(IoStep::WouldBlock),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Write as much of `a` then `b` as the kernel takes right now; returns the
/// number of bytes written (stops at `WouldBlock`).
pub fn write_now<S: Write>(stream: &mut S, a: &[u8], b: &[u8]) -> io::Result<usize> {
    let total = a.len() + b.len();
    let mut done = 0;
    while done < total {
        let step = if done < a.len() {
            write_step(stream, &[IoSlice::new(&a[done..]), IoSlice::new(b)])?
        } else {
            write_step(stream, &[IoSlice::new(&b[done - a.len()..])])?
        };
        match step {
            IoStep::Progress(n) => done += n,
            IoStep::WouldBlock => break,
            IoStep::Eof => return Err(io::ErrorKind::WriteZero.into()),
        }
    }
    Ok(done)
}
