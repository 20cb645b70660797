//! Container logs in docker's json-file format: one JSON object a line,
//! `{"log":"text\n","stream":"stdout","time":"2024-01-02T03:04:05.123456789Z"}`. The monitor
//! writes them ([`LogWriter`]); `logs` reads them back, with `--tail`, `--timestamps` and
//! `--follow`; [`Attached::stream_to_exit`] follows them for `run` in the foreground.

use std::collections::VecDeque;
use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::AsFd;
use std::path::Path;
use std::time::Duration;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use serde::{Deserialize, Serialize};

use super::{ContainerError, Runtime, Status};

/// What `logs` prints.
#[derive(Clone, Debug, Default)]
pub struct LogOptions {
    /// Keep printing new lines until the container stops.
    pub follow: bool,
    /// Only the last N lines.
    pub tail: Option<usize>,
    /// Prefix each line with its RFC 3339 time.
    pub timestamps: bool,
}

/// One line of `container.log`.
#[derive(Debug, Serialize, Deserialize)]
pub struct LogEntry {
    pub log: String,
    pub stream: String,
    pub time: String,
}

/// Turns a stream of bytes from the container into log lines; a line without its newline is
/// held until the newline comes, the buffer grows past 16 KiB, or the stream ends (as docker).
pub struct LogWriter {
    pending: [Vec<u8>; 2],
}

/// Which of the container's output streams a chunk came from.
#[derive(Clone, Copy, Debug)]
pub enum Stream {
    Stdout = 0,
    Stderr = 1,
}

const MAX_PARTIAL: usize = 16 * 1024;

impl Default for LogWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl LogWriter {
    pub fn new() -> LogWriter {
        LogWriter { pending: [Vec::new(), Vec::new()] }
    }

    /// Appends the complete lines of `data` (after what was pending) to `out`.
    pub fn write(&mut self, out: &mut impl Write, stream: Stream, data: &[u8]) -> io::Result<()> {
        let pending = &mut self.pending[stream as usize];
        pending.extend_from_slice(data);
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            write_entry(out, stream, &line)?;
        }
        if pending.len() > MAX_PARTIAL {
            let line = std::mem::take(pending);
            write_entry(out, stream, &line)?;
        }
        Ok(())
    }

    /// Writes what is left of `stream` (its last line had no newline).
    pub fn finish(&mut self, out: &mut impl Write, stream: Stream) -> io::Result<()> {
        let line = std::mem::take(&mut self.pending[stream as usize]);
        if line.is_empty() {
            return Ok(());
        }
        write_entry(out, stream, &line)
    }
}

fn write_entry(out: &mut impl Write, stream: Stream, line: &[u8]) -> io::Result<()> {
    let entry = LogEntry {
        log: String::from_utf8_lossy(line).into_owned(),
        stream: match stream {
            Stream::Stdout => "stdout".into(),
            Stream::Stderr => "stderr".into(),
        },
        time: jiff::Timestamp::now().to_string(),
    };
    let mut bytes = serde_json::to_vec(&entry).map_err(io::Error::other)?;
    bytes.push(b'\n');
    out.write_all(&bytes)
}

pub(super) fn copy(
    runtime: &Runtime,
    id: &str,
    opts: &LogOptions,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
) -> Result<(), ContainerError> {
    let path = runtime.container_dir(id).join("container.log");
    let file = match fs::File::open(&path) {
        Ok(file) => Some(file),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(ContainerError::io("reading", &path, e)),
    };
    // `create` makes the log; a container without one never wrote a line.
    let Some(file) = file else { return Ok(()) };
    copy_file(runtime, id, file, opts, stdout, stderr)
}

/// A container's log opened before it starts, so that its output can be streamed to the end
/// even when the container removes itself (`run --rm` in the foreground).
pub struct Attached {
    id: String,
    file: fs::File,
}

impl Attached {
    /// Writes the container's output as it comes until the container stops.
    pub fn stream(self, runtime: &Runtime, stdout: &mut dyn Write, stderr: &mut dyn Write) -> Result<(), ContainerError> {
        let opts = LogOptions { follow: true, ..LogOptions::default() };
        copy_file(runtime, &self.id, self.file, &opts, stdout, stderr)
    }

    /// Writes the container's output as it comes and returns its exit code once the monitor of
    /// `started` reports it (after a `--rm` container is removed). It sleeps in poll(2) on the
    /// monitor's event pipe and on its output wake-up pipe, never on a timer, so the end of a
    /// short container is seen at once. `None` when the monitor cannot tell (the container
    /// was running before `start`, or its monitor died): ask [`Runtime::wait`] then.
    pub fn stream_to_exit(
        self,
        runtime: &Runtime,
        started: super::Started,
        stdout: &mut dyn Write,
        stderr: &mut dyn Write,
    ) -> Result<Option<i32>, ContainerError> {
        let Some(mut events) = started.events else {
            self.stream(runtime, stdout, stderr)?;
            return Ok(None);
        };
        let mut output = started.output;
        let path = runtime.container_dir(&self.id).join("container.log");
        let mut file = self.file;
        let mut pending = Vec::new();
        let mut drain = |pending: &mut Vec<u8>| -> Result<(), ContainerError> {
            file.read_to_end(pending).map_err(|e| ContainerError::io("reading", &path, e))?;
            while let Some(end) = pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = pending.drain(..=end).collect();
                print_entry(&line, false, &self.id, &mut *stdout, &mut *stderr)?;
            }
            Ok(())
        };
        drain(&mut pending)?;
        loop {
            // An event may sit in the reader's buffer already, read along with `Started`.
            if events.buffer().is_empty() {
                let mut fds = vec![PollFd::new(events.get_ref().as_fd(), PollFlags::POLLIN)];
                if let Some(output) = &output {
                    fds.push(PollFd::new(output.as_fd(), PollFlags::POLLIN));
                }
                match poll(&mut fds, PollTimeout::NONE) {
                    Ok(_) => {}
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(source) => return Err(ContainerError::Sys { what: "waiting for the container".into(), source }),
                }
                let ready = |fd: &PollFd<'_>| fd.revents().is_some_and(|r| !r.is_empty());
                let event_ready = ready(&fds[0]);
                let output_ready = fds.get(1).is_some_and(ready);
                drop(fds);
                if output_ready {
                    // Only the wake-up matters. One read cannot block, as poll said readable;
                    // end of file (the monitor is gone) stops watching the pipe.
                    let mut wakeups = [0u8; 4096];
                    if output.as_mut().is_none_or(|o| !matches!(o.read(&mut wakeups), Ok(n) if n > 0)) {
                        output = None;
                    }
                }
                drain(&mut pending)?;
                if !event_ready {
                    continue;
                }
            }
            // The monitor writes the last lines before it reports the exit.
            match super::read_event(&mut events) {
                Some(super::MonitorEvent::Exited { exit_code }) => {
                    drain(&mut pending)?;
                    return Ok(Some(exit_code));
                }
                Some(_) => continue,
                None => {
                    drain(&mut pending)?;
                    return Ok(None);
                }
            }
        }
    }
}

impl Runtime {
    /// Opens a container's log for [`Attached::stream`].
    pub fn attach(&self, name_or_id: &str) -> Result<Attached, ContainerError> {
        let id = self.resolve_id(name_or_id)?;
        let path = self.container_dir(&id).join("container.log");
        let file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(&path)
            .map_err(|e| ContainerError::io("opening", &path, e))?;
        Ok(Attached { id, file })
    }
}

fn copy_file(
    runtime: &Runtime,
    id: &str,
    file: fs::File,
    opts: &LogOptions,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
) -> Result<(), ContainerError> {
    let path = runtime.container_dir(id).join("container.log");
    let mut print = |line: &[u8]| print_entry(line, opts.timestamps, id, &mut *stdout, &mut *stderr);
    let mut reader = BufReader::new(file);
    // Bytes, not strings: the monitor may be half-way through writing a multi-byte character.
    let mut line = Vec::new();
    // The backlog: every complete line, or the last `tail` of them.
    let mut backlog: VecDeque<Vec<u8>> = VecDeque::new();
    let mut partial = Vec::new();
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line).map_err(|e| ContainerError::io("reading", &path, e))?;
        if n == 0 {
            break;
        }
        if !line.ends_with(b"\n") {
            partial = line.clone();
            break;
        }
        if opts.tail == Some(0) {
            continue;
        }
        backlog.push_back(line.clone());
        if let Some(tail) = opts.tail {
            while backlog.len() > tail {
                backlog.pop_front();
            }
        } else if backlog.len() > 1024 {
            for l in backlog.drain(..) {
                print(&l)?;
            }
        }
    }
    for l in backlog.drain(..) {
        print(&l)?;
    }
    if !opts.follow {
        return Ok(());
    }
    // Poll quickly at first, then back off: a short-lived container's exit is noticed within a
    // millisecond or two (what `ctl run --rm` waits on), an idle one costs little.
    let mut idle = Duration::from_millis(1);
    loop {
        let mut chunk = Vec::new();
        let n = reader.read_to_end(&mut chunk).map_err(|e| ContainerError::io("reading", &path, e))?;
        if n > 0 {
            idle = Duration::from_millis(1);
            partial.extend_from_slice(&chunk);
            while let Some(end) = partial.iter().position(|b| *b == b'\n') {
                let l: Vec<u8> = partial.drain(..=end).collect();
                print(&l)?;
            }
            continue;
        }
        // Everything written so far is printed; stop once the container is no longer running
        // (its monitor writes the last lines before it records the exit).
        let running = matches!(runtime.inspect(id), Ok(st) if st.status == Status::Running);
        if !running {
            let _ = reader.read_to_end(&mut partial);
            for l in partial.split_inclusive(|b| *b == b'\n').filter(|l| l.ends_with(b"\n")) {
                print(l)?;
            }
            return Ok(());
        }
        std::thread::sleep(idle);
        idle = (idle * 2).min(Duration::from_millis(25));
    }
}

/// Prints one JSON line of the log as docker does: its text on the stream it came from.
fn print_entry(
    line: &[u8],
    timestamps: bool,
    id: &str,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
) -> Result<(), ContainerError> {
    // A damaged line is skipped rather than ending the whole listing.
    let Ok(entry) = serde_json::from_slice::<LogEntry>(line) else { return Ok(()) };
    let out: &mut dyn Write = if entry.stream == "stderr" { stderr } else { stdout };
    let result = if timestamps {
        write!(out, "{} {}", entry.time, entry.log)
    } else {
        out.write_all(entry.log.as_bytes())
    };
    result.and_then(|()| out.flush()).map_err(|e| ContainerError::io("writing the logs of", Path::new(id), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_split_and_partials_held() {
        let mut w = LogWriter::new();
        let mut out = Vec::new();
        w.write(&mut out, Stream::Stdout, b"one\ntw").unwrap();
        w.write(&mut out, Stream::Stderr, b"err\n").unwrap();
        w.write(&mut out, Stream::Stdout, b"o\nthree").unwrap();
        w.finish(&mut out, Stream::Stdout).unwrap();
        let entries: Vec<LogEntry> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let got: Vec<(&str, &str)> = entries.iter().map(|e| (e.stream.as_str(), e.log.as_str())).collect();
        assert_eq!(got, vec![("stdout", "one\n"), ("stderr", "err\n"), ("stdout", "two\n"), ("stdout", "three")]);
    }
}
