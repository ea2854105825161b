//! Frames on the socketpair between the root supervisor and the user-side relay (the Slurm task).
//! Supervisor → relay: container output and the final exit code. Relay → supervisor: the signals
//! Slurm delivered to the task (suspend, resume, terminate, finish). Layout: 1 type byte, 4-byte
//! big-endian payload length, payload.
use crate::error::{Error, Result};
use std::io::{Read, Write};

/// Largest payload we accept; bounds memory if a peer misbehaves.
const MAX_PAYLOAD: usize = 1 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
    /// The rank's final exit code; the relay exits with it.
    Exit(i32),
    /// The supervisor failed; the message is for the job's stderr.
    Fatal(String),
    /// SIGTSTP reached the task (scontrol suspend / gang preemption).
    Suspend,
    /// SIGCONT reached the task.
    Resume,
    /// SIGTERM/SIGINT reached the task (scancel, preemption, requeue, time limit).
    Terminate,
    /// The MPI launcher finished: non-launcher ranks end their containers.
    Finish,
    /// SIGUSR1 reached the task: take a checkpoint and keep running (periodic or `slurm-ckpt checkpoint`).
    Checkpoint,
}

impl Frame {
    fn parts(&self) -> (u8, Vec<u8>) {
        match self {
            Frame::Stdout(b) => (1, b.clone()),
            Frame::Stderr(b) => (2, b.clone()),
            Frame::Exit(c) => (3, c.to_be_bytes().to_vec()),
            Frame::Fatal(m) => (4, m.as_bytes().to_vec()),
            Frame::Suspend => (10, vec![]),
            Frame::Resume => (11, vec![]),
            Frame::Terminate => (12, vec![]),
            Frame::Finish => (13, vec![]),
            Frame::Checkpoint => (14, vec![]),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let (t, payload) = self.parts();
        let mut out = Vec::with_capacity(5 + payload.len());
        out.push(t);
        out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        out.extend_from_slice(&payload);
        out
    }

    pub fn decode(t: u8, payload: Vec<u8>) -> Result<Frame> {
        Ok(match t {
            1 => Frame::Stdout(payload),
            2 => Frame::Stderr(payload),
            3 => {
                let b: [u8; 4] = payload
                    .try_into()
                    .map_err(|_| Error::Protocol("exit frame length".into()))?;
                Frame::Exit(i32::from_be_bytes(b))
            }
            4 => Frame::Fatal(String::from_utf8_lossy(&payload).into_owned()),
            10 => Frame::Suspend,
            11 => Frame::Resume,
            12 => Frame::Terminate,
            13 => Frame::Finish,
            14 => Frame::Checkpoint,
            _ => return Err(Error::Protocol(format!("unknown frame type {t}"))),
        })
    }
}

/// Blocking read of one frame; `Ok(None)` on a clean EOF between frames.
pub fn read_frame(r: &mut impl Read) -> Result<Option<Frame>> {
    let mut hdr = [0u8; 5];
    match r.read_exact(&mut hdr) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(Error::Protocol(e.to_string())),
    }
    let mut payload = vec![0u8; payload_len(&hdr)?];
    r.read_exact(&mut payload)
        .map_err(|e| Error::Protocol(e.to_string()))?;
    Frame::decode(hdr[0], payload).map(Some)
}

/// The same as `read_frame`, for the supervisor's async side of the socket: one decoder, one limit.
pub async fn read_frame_async(
    r: &mut (impl tokio::io::AsyncRead + Unpin),
) -> Result<Option<Frame>> {
    use tokio::io::AsyncReadExt;
    let mut hdr = [0u8; 5];
    match r.read_exact(&mut hdr).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(Error::Protocol(e.to_string())),
    }
    let mut payload = vec![0u8; payload_len(&hdr)?];
    r.read_exact(&mut payload)
        .await
        .map_err(|e| Error::Protocol(e.to_string()))?;
    Frame::decode(hdr[0], payload).map(Some)
}

/// Payload length from a frame header, refused above `MAX_PAYLOAD`.
fn payload_len(hdr: &[u8; 5]) -> Result<usize> {
    let len = u32::from_be_bytes([hdr[1], hdr[2], hdr[3], hdr[4]]) as usize;
    if len > MAX_PAYLOAD {
        return Err(Error::Protocol(format!("frame of {len} bytes")));
    }
    Ok(len)
}

pub fn write_frame(w: &mut impl Write, f: &Frame) -> std::io::Result<()> {
    w.write_all(&f.encode())?;
    w.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let frames = vec![
            Frame::Stdout(b"hello\n".to_vec()),
            Frame::Stderr(vec![]),
            Frame::Exit(-3),
            Frame::Fatal("boom".into()),
            Frame::Suspend,
            Frame::Resume,
            Frame::Terminate,
            Frame::Finish,
            Frame::Checkpoint,
        ];
        let mut buf = Vec::new();
        for f in &frames {
            write_frame(&mut buf, f).unwrap();
        }
        let mut r = &buf[..];
        for f in &frames {
            assert_eq!(read_frame(&mut r).unwrap().as_ref(), Some(f));
        }
        assert_eq!(read_frame(&mut r).unwrap(), None);
    }

    #[tokio::test]
    async fn async_reader_decodes_the_same() {
        let mut buf = Vec::new();
        write_frame(&mut buf, &Frame::Exit(7)).unwrap();
        write_frame(&mut buf, &Frame::Suspend).unwrap();
        let mut r = &buf[..];
        assert_eq!(
            read_frame_async(&mut r).await.unwrap(),
            Some(Frame::Exit(7))
        );
        assert_eq!(
            read_frame_async(&mut r).await.unwrap(),
            Some(Frame::Suspend)
        );
        assert_eq!(read_frame_async(&mut r).await.unwrap(), None);
        let big = [1u8, 0xff, 0xff, 0xff, 0xff];
        assert!(read_frame_async(&mut &big[..]).await.is_err());
    }

    #[test]
    fn rejects_garbage() {
        assert!(read_frame(&mut &[99u8, 0, 0, 0, 0][..]).is_err());
        assert!(read_frame(&mut &[1u8, 0xff, 0xff, 0xff, 0xff][..]).is_err());
        assert!(read_frame(&mut &[1u8, 0, 0, 0, 5, b'a'][..]).is_err());
    }
}
