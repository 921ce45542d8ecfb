//! Redis connections speaking RESP2 directly, for the two hot paths: the batch
//! writer's MULTI/EXEC and the recommender's per-request script call.
//!
//! A batch is thousands of commands in one MULTI/EXEC. Through the generic
//! client every command was built as an object of its own and both of its
//! replies (`QUEUED`, then its result inside EXEC's array) were parsed into
//! owned values: a profile of ingest put a fifth of its CPU there. Here a
//! request is encoded into one reused buffer, replies to writes are checked in
//! place without allocating, and only replies to reads become values.
//!
//! It does what those callers need and no more: TCP, `AUTH`, `SELECT`, one
//! request at a time per connection ([`Pool`] for concurrent callers). Any
//! error closes the connection, since replies may be left unread on it; the
//! caller starts over on a new one.

use std::io;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Buffers grown beyond this by a large batch are released after it.
const KEEP_BUFFER_BYTES: usize = 4 << 20;

/// Nesting deeper than this is not a reply any command of ours gets.
const MAX_DEPTH: usize = 8;

/// Bulk strings longer than this are refused (Redis's own limit is 512 MiB).
const MAX_BULK_BYTES: usize = 512 << 20;

/// Why a round trip failed.
#[derive(Debug)]
pub enum Error {
    /// The connection broke, timed out, or the server did not speak RESP2.
    Io(io::Error),
    /// The server answered with an error reply.
    Server(String),
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(e)
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Io(e) => write!(f, "{e}"),
            Error::Server(e) => write!(f, "redis answered: {e}"),
        }
    }
}

/// A round trip that took longer than `timeout`.
pub fn timed_out(timeout: Duration) -> Error {
    Error::Io(io::Error::new(
        io::ErrorKind::TimedOut,
        format!("no reply within {} ms", timeout.as_millis()),
    ))
}

fn protocol(detail: impl Into<String>) -> Error {
    Error::Io(io::Error::new(io::ErrorKind::InvalidData, detail.into()))
}

/// Commands to send in one write, as RESP arrays of bulk strings.
#[derive(Debug, Default)]
pub struct Request {
    buf: Vec<u8>,
    commands: usize,
}

impl Request {
    pub fn clear(&mut self) {
        if self.buf.capacity() > KEEP_BUFFER_BYTES {
            self.buf = Vec::new();
        }
        self.buf.clear();
        self.commands = 0;
    }

    /// Adds the command `head ++ tail`, e.g. `(["MGET"], keys)`.
    pub fn command(&mut self, head: &[&str], tail: &[impl AsRef<str>]) {
        self.header(b'*', head.len() + tail.len());
        for arg in head {
            self.bulk(arg.as_bytes());
        }
        for arg in tail {
            self.bulk(arg.as_ref().as_bytes());
        }
        self.commands += 1;
    }

    pub fn simple(&mut self, args: &[&str]) {
        self.command(args, &[] as &[&str]);
    }

    /// Commands added since the last `clear`; each gets one reply.
    pub fn commands(&self) -> usize {
        self.commands
    }

    fn header(&mut self, kind: u8, n: usize) {
        self.buf.push(kind);
        self.buf
            .extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
        self.buf.extend_from_slice(b"\r\n");
    }

    fn bulk(&mut self, arg: &[u8]) {
        self.header(b'$', arg.len());
        self.buf.extend_from_slice(arg);
        self.buf.extend_from_slice(b"\r\n");
    }
}

/// One connection to Redis.
#[derive(Debug)]
pub struct Connection {
    stream: TcpStream,
    input: Vec<u8>,
}

impl Connection {
    /// Connects, then authenticates and selects the database the URL names.
    pub async fn connect(info: &redis::ConnectionInfo) -> Result<Connection, Error> {
        let stream = match info.addr() {
            redis::ConnectionAddr::Tcp(host, port) => {
                TcpStream::connect((host.as_str(), *port)).await?
            }
            other => {
                return Err(Error::Io(io::Error::new(
                    io::ErrorKind::Unsupported,
                    format!("the batch writer connects over plain TCP only, not to {other}"),
                )));
            }
        };
        // A batch is written in several segments: with Nagle's algorithm on,
        // each could wait for a delayed ACK.
        stream.set_nodelay(true)?;
        let mut conn = Connection {
            stream,
            input: Vec::new(),
        };
        let settings = info.redis_settings();
        let mut hello = Request::default();
        if let Some(password) = settings.password() {
            match settings.username() {
                Some(user) => hello.simple(&["AUTH", user, password]),
                None => hello.simple(&["AUTH", password]),
            }
        }
        if settings.db() != 0 {
            hello.simple(&["SELECT", itoa::Buffer::new().format(settings.db())]);
        }
        if hello.commands() > 0 {
            conn.round_trip(&hello, |_, buf, pos| match check(buf, pos)? {
                None => Ok(false),
                Some(Checked { error: Some(e), .. }) => Err(Error::Server(e)),
                Some(_) => Ok(true),
            })
            .await?;
        }
        Ok(conn)
    }

    /// Sends `request`, then hands each of its replies in turn to `reply`
    /// (its index, the input and the position it starts at). `reply` returns
    /// false, leaving the position anywhere, when the input ends before the
    /// reply does; it is called again from the same start once more arrived.
    pub async fn round_trip(
        &mut self,
        request: &Request,
        mut reply: impl FnMut(usize, &[u8], &mut usize) -> Result<bool, Error>,
    ) -> Result<(), Error> {
        self.stream.write_all(&request.buf).await?;
        if self.input.capacity() > KEEP_BUFFER_BYTES {
            self.input = Vec::new();
        }
        self.input.clear();
        let mut pos = 0;
        let mut index = 0;
        while index < request.commands {
            let start = pos;
            if reply(index, &self.input, &mut pos)? {
                index += 1;
                continue;
            }
            pos = start;
            self.input.reserve(64 * 1024);
            if self.stream.read_buf(&mut self.input).await? == 0 {
                return Err(Error::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "redis closed the connection",
                )));
            }
        }
        if pos != self.input.len() {
            return Err(protocol(format!(
                "{} bytes after the last reply",
                self.input.len() - pos
            )));
        }
        Ok(())
    }
}

/// A reply's type byte and the rest of its first line; moves `*pos` past them.
fn header<'a>(
    buf: &'a [u8],
    pos: &mut usize,
    depth: usize,
) -> Result<Option<(u8, &'a [u8])>, Error> {
    if depth > MAX_DEPTH {
        return Err(protocol("replies nested too deeply"));
    }
    let Some(&kind) = buf.get(*pos) else {
        return Ok(None);
    };
    *pos += 1;
    Ok(line(buf, pos)?.map(|line| (kind, line)))
}

/// Connections for concurrent callers: each round trip has a connection to
/// itself, read by the task that waits for it (no reader task to hand replies
/// over), at most `max` at once; idle ones are kept for the next caller.
#[derive(Debug)]
pub struct Pool {
    info: redis::ConnectionInfo,
    idle: Mutex<Vec<Connection>>,
    permits: tokio::sync::Semaphore,
    timeout: Duration,
}

impl Pool {
    pub fn new(info: redis::ConnectionInfo, max: usize, timeout: Duration) -> Pool {
        Pool {
            info,
            idle: Mutex::new(Vec::with_capacity(max)),
            permits: tokio::sync::Semaphore::new(max),
            timeout,
        }
    }

    /// [`Connection::round_trip`] on an idle connection or a new one, within
    /// the timeout (connecting included); a connection that failed is dropped.
    pub async fn round_trip(
        &self,
        request: &Request,
        reply: impl FnMut(usize, &[u8], &mut usize) -> Result<bool, Error>,
    ) -> Result<(), Error> {
        let _permit = self.permits.acquire().await.expect("the pool never closes");
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let conn = tokio::time::timeout(self.timeout, async {
            let mut conn = match idle {
                Some(conn) => conn,
                None => Connection::connect(&self.info).await?,
            };
            conn.round_trip(request, reply).await?;
            Ok(conn)
        })
        .await
        .unwrap_or_else(|_| Err(timed_out(self.timeout)))?;
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(conn);
        Ok(())
    }
}

/// The line at `*pos` without its CRLF; moves `*pos` past it.
fn line<'a>(buf: &'a [u8], pos: &mut usize) -> Result<Option<&'a [u8]>, Error> {
    let rest = &buf[*pos..];
    let Some(lf) = rest.iter().position(|&b| b == b'\n') else {
        return Ok(None);
    };
    if lf == 0 || rest[lf - 1] != b'\r' {
        return Err(protocol("a reply line does not end with CRLF"));
    }
    *pos += lf + 1;
    Ok(Some(&rest[..lf - 1]))
}

fn number(digits: &[u8]) -> Result<i64, Error> {
    std::str::from_utf8(digits)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            protocol(format!(
                "`{}` is not a number",
                String::from_utf8_lossy(digits)
            ))
        })
}

/// A length that may be -1 (a nil bulk string or array).
fn length(digits: &[u8]) -> Result<Option<usize>, Error> {
    match number(digits)? {
        -1 => Ok(None),
        n if (0..=MAX_BULK_BYTES as i64).contains(&n) => Ok(Some(n as usize)),
        n => Err(protocol(format!("length {n} out of range"))),
    }
}

/// The bulk string of `len` bytes at `*pos`; moves `*pos` past it.
fn bulk<'a>(buf: &'a [u8], pos: &mut usize, len: usize) -> Result<Option<&'a [u8]>, Error> {
    let end = *pos + len;
    if buf.len() < end + 2 {
        return Ok(None);
    }
    if &buf[end..end + 2] != b"\r\n" {
        return Err(protocol("a bulk string does not end with CRLF"));
    }
    let data = &buf[*pos..end];
    *pos = end + 2;
    Ok(Some(data))
}

/// What a reply to a write held, read without keeping it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Checked {
    /// The reply's type byte (`+`, `-`, `:`, `$`, `*`).
    pub kind: u8,
    /// A nil bulk string or array, as EXEC answers when a watched key changed.
    pub nil: bool,
    /// The first error in the reply, at any depth.
    pub error: Option<String>,
}

/// Reads the reply at `*pos` without allocating (except for an error's
/// text); `None` if the input ends first.
pub fn check(buf: &[u8], pos: &mut usize) -> Result<Option<Checked>, Error> {
    let mut checked = Checked::default();
    Ok(skip(buf, pos, 0, &mut checked)?.then_some(checked))
}

fn skip(buf: &[u8], pos: &mut usize, depth: usize, out: &mut Checked) -> Result<bool, Error> {
    let Some((kind, line)) = header(buf, pos, depth)? else {
        return Ok(false);
    };
    if depth == 0 {
        out.kind = kind;
    }
    match kind {
        b'+' => Ok(true),
        b':' => number(line).map(|_| true),
        b'-' => {
            if out.error.is_none() {
                out.error = Some(String::from_utf8_lossy(line).into_owned());
            }
            Ok(true)
        }
        b'$' => match length(line)? {
            None => {
                out.nil |= depth == 0;
                Ok(true)
            }
            Some(len) => Ok(bulk(buf, pos, len)?.is_some()),
        },
        b'*' => match length(line)? {
            None => {
                out.nil |= depth == 0;
                Ok(true)
            }
            Some(n) => {
                for _ in 0..n {
                    if !skip(buf, pos, depth + 1, out)? {
                        return Ok(false);
                    }
                }
                Ok(true)
            }
        },
        other => Err(protocol(format!(
            "reply type `{}` is not RESP2",
            char::from(other)
        ))),
    }
}

/// Parses the reply at `*pos` into a value; `None` if the input ends first.
/// An error reply, at any depth, is `Error::Server`.
pub fn value(buf: &[u8], pos: &mut usize) -> Result<Option<redis::Value>, Error> {
    parse(buf, pos, 0)
}

fn parse(buf: &[u8], pos: &mut usize, depth: usize) -> Result<Option<redis::Value>, Error> {
    let Some((kind, line)) = header(buf, pos, depth)? else {
        return Ok(None);
    };
    Ok(Some(match kind {
        b'+' => redis::Value::SimpleString(String::from_utf8_lossy(line).into_owned()),
        b'-' => return Err(Error::Server(String::from_utf8_lossy(line).into_owned())),
        b':' => redis::Value::Int(number(line)?),
        b'$' => match length(line)? {
            None => redis::Value::Nil,
            Some(len) => match bulk(buf, pos, len)? {
                Some(data) => redis::Value::BulkString(data.to_vec()),
                None => return Ok(None),
            },
        },
        b'*' => match length(line)? {
            None => redis::Value::Nil,
            Some(n) => {
                // The count is the server's word; the input bounds what is allocated.
                let mut items = Vec::with_capacity(n.min(buf.len() - *pos));
                for _ in 0..n {
                    match parse(buf, pos, depth + 1)? {
                        Some(item) => items.push(item),
                        None => return Ok(None),
                    }
                }
                redis::Value::Array(items)
            }
        },
        other => {
            return Err(protocol(format!(
                "reply type `{}` is not RESP2",
                char::from(other)
            )));
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_encoded_as_arrays_of_bulk_strings() {
        let mut r = Request::default();
        r.simple(&["MULTI"]);
        r.command(&["MGET"], &["k1".to_string(), "ké".to_string()]);
        assert_eq!(r.commands(), 2);
        assert_eq!(
            r.buf,
            b"*1\r\n$5\r\nMULTI\r\n*3\r\n$4\r\nMGET\r\n$2\r\nk1\r\n$3\r\nk\xc3\xa9\r\n"
        );
        r.clear();
        assert_eq!((r.buf.len(), r.commands()), (0, 0));
    }

    #[test]
    fn checking_finds_nil_and_the_first_error_at_any_depth() {
        let buf = b"+QUEUED\r\n*-1\r\n*3\r\n:1\r\n-WRONGTYPE no\r\n$2\r\nok\r\n-ERR x\r\n";
        let mut pos = 0;
        let mut seen = Vec::new();
        while pos < buf.len() {
            seen.push(check(buf, &mut pos).unwrap().unwrap());
        }
        assert_eq!(seen.len(), 4);
        assert_eq!(
            (seen[0].kind, seen[0].nil, &seen[0].error),
            (b'+', false, &None)
        );
        assert_eq!((seen[1].kind, seen[1].nil), (b'*', true));
        assert_eq!(
            (seen[2].kind, seen[2].nil, seen[2].error.as_deref()),
            (b'*', false, Some("WRONGTYPE no"))
        );
        assert_eq!(seen[3].error.as_deref(), Some("ERR x"));
    }

    #[test]
    fn values_are_parsed_and_an_error_reply_is_a_server_error() {
        let buf = b"*4\r\n$1\r\na\r\n$-1\r\n:-7\r\n$0\r\n\r\n";
        let mut pos = 0;
        assert_eq!(
            value(buf, &mut pos).unwrap(),
            Some(redis::Value::Array(vec![
                redis::Value::BulkString(b"a".to_vec()),
                redis::Value::Nil,
                redis::Value::Int(-7),
                redis::Value::BulkString(Vec::new()),
            ]))
        );
        assert_eq!(pos, buf.len());
        let mut pos = 0;
        match value(b"-NOAUTH Authentication required.\r\n", &mut pos) {
            Err(Error::Server(e)) => assert_eq!(e, "NOAUTH Authentication required."),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn every_cut_of_a_reply_is_incomplete_not_an_error() {
        let buf: &[u8] = b"*3\r\n$5\r\nhello\r\n*2\r\n:1\r\n$-1\r\n+OK\r\n";
        for cut in 0..buf.len() {
            let (mut a, mut b) = (0, 0);
            assert!(check(&buf[..cut], &mut a).unwrap().is_none(), "cut {cut}");
            assert!(value(&buf[..cut], &mut b).unwrap().is_none(), "cut {cut}");
        }
        let mut pos = 0;
        assert!(check(buf, &mut pos).unwrap().is_some());
        assert_eq!(pos, buf.len());
    }

    #[test]
    fn malformed_input_is_a_protocol_error() {
        for bad in [
            &b"+OK\n"[..],
            b"$3\r\nabcd\r\n",
            b":x\r\n",
            b"$-2\r\n",
            b"%1\r\n",
            b"*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n",
        ] {
            let (mut a, mut b) = (0, 0);
            assert!(
                matches!(check(bad, &mut a), Err(Error::Io(_))),
                "{}",
                String::from_utf8_lossy(bad)
            );
            assert!(
                matches!(value(bad, &mut b), Err(Error::Io(_))),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
