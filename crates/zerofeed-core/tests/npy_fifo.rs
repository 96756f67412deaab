//! `NpyFile::open` never blocks on a named pipe: not when the path is a FIFO, and not
//! when a FIFO is swapped in between its checks. Each open runs in a thread with a
//! deadline, so a regression fails the test instead of hanging it.
#![cfg(unix)]

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::Duration;

use zerofeed_core::source::{NpyFile, SourceError};

const DEADLINE: Duration = Duration::from_secs(20);

/// A directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("zerofeed-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn mkfifo(path: &Path) {
    let c = CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: `c` is a NUL-terminated path that outlives the call.
    let rc = unsafe { libc::mkfifo(c.as_ptr(), 0o600) };
    assert_eq!(rc, 0, "mkfifo: {}", std::io::Error::last_os_error());
}

/// Runs `f` on a thread and waits at most `DEADLINE` for it (a hung open is a failure;
/// the blocked thread is left behind, and the test binary exits anyway).
fn within_deadline<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (send, receive) = mpsc::channel();
    thread::spawn(move || {
        let _ = send.send(f());
    });
    receive
        .recv_timeout(DEADLINE)
        .unwrap_or_else(|_| panic!("{what} did not return within {DEADLINE:?}: it blocked"))
}

/// A valid 1-element uint8 `.npy` file.
fn npy_bytes() -> Vec<u8> {
    let dict = b"{'descr': '|u1', 'fortran_order': False, 'shape': (1,), }";
    let mut text = dict.to_vec();
    while (10 + text.len() + 1) % 64 != 0 {
        text.push(b' ');
    }
    text.push(b'\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend((text.len() as u16).to_le_bytes());
    out.extend(text);
    out.push(7);
    out
}

#[test]
fn a_named_pipe_is_refused_at_once() {
    let dir = TempDir::new("fifo");
    let fifo = dir.0.join("pipe.npy");
    mkfifo(&fifo);
    let path = fifo.clone();
    let err = within_deadline("open on a FIFO", move || NpyFile::open(&path).unwrap_err());
    assert!(matches!(err, SourceError::NotAFile { .. }), "{err}");
    assert!(
        err.to_string().starts_with(&fifo.display().to_string()),
        "{err}"
    );
    assert!(err.to_string().contains("not a regular file"), "{err}");
}

#[test]
fn a_character_device_is_refused() {
    let err = within_deadline("open on /dev/null", || {
        NpyFile::open(Path::new("/dev/null")).unwrap_err()
    });
    assert!(matches!(err, SourceError::NotAFile { .. }), "{err}");
}

#[test]
fn a_pipe_swapped_in_after_the_check_does_not_block() {
    // One thread keeps replacing `target` (atomically, by rename) with a fresh FIFO, then
    // a fresh file; the other opens it again and again. Every open must return: the
    // file, or NotAFile. Without O_NONBLOCK an open that loses the race waits forever.
    let dir = TempDir::new("fifo-race");
    let target = dir.0.join("target.npy");
    std::fs::write(&target, npy_bytes()).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let swapper = {
        let (stop, dir, target) = (stop.clone(), dir.0.clone(), target.clone());
        thread::spawn(move || {
            let (fifo, file) = (dir.join("next.fifo"), dir.join("next.npy"));
            while !stop.load(Ordering::Relaxed) {
                mkfifo(&fifo);
                std::fs::rename(&fifo, &target).unwrap();
                std::fs::write(&file, npy_bytes()).unwrap();
                std::fs::rename(&file, &target).unwrap();
            }
        })
    };
    let path = target.clone();
    let (opened, refused) = within_deadline("opens racing a FIFO swap", move || {
        // For 1 s (tens of thousands of opens: the race window is microseconds wide, so
        // a blocking open is caught in most runs, not all), and until both outcomes have
        // been seen often (the swapper may start late on a busy machine), at most 5 s.
        let started = std::time::Instant::now();
        let (mut opened, mut refused) = (0u32, 0u32);
        while (opened < 200 || refused < 200 || started.elapsed() < Duration::from_secs(1))
            && started.elapsed() < Duration::from_secs(5)
        {
            match NpyFile::open(&path) {
                Ok(file) => {
                    assert_eq!(file.data(), &[7]);
                    opened += 1;
                }
                Err(SourceError::NotAFile { .. }) => refused += 1,
                Err(other) => panic!("unexpected error: {other}"),
            }
        }
        (opened, refused)
    });
    stop.store(true, Ordering::Relaxed);
    swapper.join().unwrap();
    assert!(
        opened > 0 && refused > 0,
        "opened {opened}, refused {refused}"
    );
}
