//! `NpyFile::open` on real files: contents, pointers, errors that name the file, a
//! sparse file larger than 4 GiB, and named pipes (refused at once, never blocking).

use std::fs::{self, File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use zerofeed_core::source::{NpyError, NpyFile, SourceError};
use zerofeed_core::DType;

/// A directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("zerofeed-{name}-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.0.join(name);
        fs::write(&path, bytes).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// The header `np.save` writes (version 1.0, padded to 64 bytes, ending in '\n').
fn header(descr: &str, fortran: bool, shape: &str) -> Vec<u8> {
    let fortran = if fortran { "True" } else { "False" };
    let dict = format!("{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': {shape}, }}");
    let mut text = dict.into_bytes();
    while (10 + text.len() + 1) % 64 != 0 {
        text.push(b' ');
    }
    text.push(b'\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend((text.len() as u16).to_le_bytes());
    out.extend(text);
    out
}

fn npy_error(result: Result<NpyFile, SourceError>) -> (SourceError, NpyError) {
    let err = result.expect_err("open should fail");
    let npy = err.npy_error().cloned().expect("a header error");
    (err, npy)
}

#[test]
fn every_dtype_maps_its_bytes_in_place() {
    let dir = TempDir::new("dtypes");
    for dtype in DType::ALL.into_iter().filter(|d| *d != DType::BF16) {
        let data: Vec<u8> = (0..6 * dtype.itemsize()).map(|i| i as u8).collect();
        let mut bytes = header(dtype.typestr(), false, "(2, 3)");
        let offset = bytes.len();
        bytes.extend(&data);
        let path = dir.write(&format!("{dtype}.npy"), &bytes);
        let file = NpyFile::open(&path).unwrap();
        let h = file.header();
        assert_eq!(
            (h.dtype, h.shape.as_slice(), h.fortran_order),
            (dtype, &[2, 3][..], false)
        );
        assert_eq!((h.data_offset, h.data_len), (offset, data.len()));
        assert_eq!(file.data(), &data[..], "{dtype}");
        assert_eq!(file.data_ptr(), file.data().as_ptr());
        // Page-aligned mapping + 64-aligned header: every element is aligned, so views
        // need no copy for alignment.
        assert_eq!(file.data_ptr() as usize % 64, 0);
        assert_eq!(file.path(), path);
    }
}

#[test]
fn fortran_order_and_zero_d_and_empty() {
    let dir = TempDir::new("shapes");
    let mut bytes = header("<f8", true, "(2, 3)");
    bytes.extend([0u8; 48]);
    let file = NpyFile::open(&dir.write("f.npy", &bytes)).unwrap();
    assert_eq!(file.header().byte_strides(), [8, 16]);

    let mut bytes = header("<i4", false, "()");
    bytes.extend(7i32.to_le_bytes());
    let file = NpyFile::open(&dir.write("scalar.npy", &bytes)).unwrap();
    assert_eq!(file.data(), 7i32.to_le_bytes());

    let file = NpyFile::open(&dir.write("empty.npy", &header("<f4", false, "(0, 3)"))).unwrap();
    assert!(file.data().is_empty());
    assert!(!file.data_ptr().is_null());
    file.advise_random().unwrap();
    file.advise_willneed(0..100).unwrap();
}

#[test]
fn advice_is_clipped_to_the_data() {
    let dir = TempDir::new("advice");
    let mut bytes = header("|u1", false, "(10000,)");
    bytes.resize(bytes.len() + 10_000, 1);
    let file = NpyFile::open(&dir.write("a.npy", &bytes)).unwrap();
    file.advise_random().unwrap();
    file.advise_willneed(5000..6000).unwrap();
    file.advise_willneed(9000..usize::MAX).unwrap();
    file.advise_willneed(20_000..30_000).unwrap();
    // A reversed range (start > end: empty), as a caller's arithmetic can produce.
    let (start, end) = (6000, 10);
    file.advise_willneed(start..end).unwrap();
}

#[test]
fn errors_name_the_file_and_the_field() {
    let dir = TempDir::new("errors");
    let mut bytes = header("<f4", false, "(1024,)");
    bytes.extend([0u8; 4000]);
    let path = dir.write("short.npy", &bytes);
    let (err, npy) = npy_error(NpyFile::open(&path));
    assert_eq!(
        npy,
        NpyError::DataTruncated {
            expected: 4096,
            actual: 4000
        }
    );
    assert_eq!(err.path(), path);
    assert_eq!(
        err.to_string(),
        format!(
            "{}: data length: header says 4096 bytes but file holds 4000 after the header (truncated file?)",
            path.display()
        )
    );
    // The error chain leads to the header error.
    let source = std::error::Error::source(&err).unwrap();
    assert_eq!(source.to_string(), npy.to_string());

    let (err, npy) = npy_error(NpyFile::open(
        &dir.write("big.npy", &header(">f4", false, "(0,)")),
    ));
    assert!(matches!(npy, NpyError::BigEndian { .. }));
    assert!(
        err.to_string().contains("big.npy: descr: big-endian '>f4'"),
        "{err}"
    );

    let (_, npy) = npy_error(NpyFile::open(&dir.write("empty.npy", b"")));
    assert!(matches!(npy, NpyError::TooShort { len: 0, .. }));
    let (_, npy) = npy_error(NpyFile::open(&dir.write("text.npy", b"hello, world\n")));
    assert!(matches!(npy, NpyError::BadMagic { .. }));

    let missing = dir.0.join("missing.npy");
    match NpyFile::open(&missing).unwrap_err() {
        SourceError::Io { path, op, source } => {
            assert_eq!((path.as_path(), op), (missing.as_path(), "open"));
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        }
        other => panic!("{other}"),
    }
    let err = NpyFile::open(&dir.0).unwrap_err();
    assert!(matches!(err, SourceError::NotAFile { .. }), "{err}");
    assert!(err.to_string().starts_with(&dir.0.display().to_string()));
}

#[test]
fn npy_file_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<NpyFile>();
    assert_send_sync::<SourceError>();
}

/// A 4.5 GiB array in a sparse file: set_len makes the hole without writing it, and only
/// the pages touched below are ever read (they read as zeros).
#[test]
fn larger_than_4_gib_via_sparse_file() {
    let dir = TempDir::new("sparse");
    let path = dir.0.join("huge.npy");
    let shape = [4608usize, 1024, 1024]; // 4.5 GiB of u8
    let len: usize = shape.iter().product();
    let head = header("|u1", false, "(4608, 1024, 1024)");
    let mut file = File::create(&path).unwrap();
    file.write_all(&head).unwrap();
    if file.set_len((head.len() + len) as u64).is_err() {
        eprintln!("skipped: this filesystem cannot hold a 4.5 GiB sparse file");
        return;
    }
    // A marker in the last bytes, to prove the end of the mapping is the end of the data.
    file.seek(SeekFrom::End(-4)).unwrap();
    file.write_all(b"tail").unwrap();
    drop(file);

    let npy = NpyFile::open(Path::new(&path)).unwrap();
    assert_eq!(npy.header().shape, shape);
    assert_eq!(npy.header().data_len, len);
    let data = npy.data();
    assert_eq!(data.len(), len);
    assert!(len > u32::MAX as usize);
    npy.advise_random().unwrap();
    npy.advise_willneed(len / 2..len / 2 + 4096).unwrap();
    assert_eq!(data[0], 0);
    assert_eq!(data[len / 2], 0);
    assert_eq!(&data[len - 4..], b"tail");
    assert_eq!(npy.header().byte_strides(), [1 << 20, 1024, 1]);

    // Appending to it is caught too.
    let mut file = OpenOptions::new().append(true).open(&path).unwrap();
    file.write_all(b"!").unwrap();
    drop(file);
    let (_, err) = npy_error(NpyFile::open(&path));
    assert_eq!(
        err,
        NpyError::TrailingBytes {
            expected: len as u64,
            actual: len as u64 + 1
        }
    );
}

/// `NpyFile::open` never blocks on a named pipe: not when the path is a FIFO, and not
/// when a FIFO is swapped in between its checks. Each open runs in a thread with a
/// deadline, so a regression fails the test instead of hanging it.
#[cfg(unix)]
mod fifo {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{mpsc, Arc};
    use std::thread;
    use std::time::Duration;

    use super::*;

    const DEADLINE: Duration = Duration::from_secs(20);

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
        let mut bytes = header("|u1", false, "(1,)");
        bytes.push(7);
        bytes
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
        fs::write(&target, npy_bytes()).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let swapper = {
            let (stop, dir, target) = (stop.clone(), dir.0.clone(), target.clone());
            thread::spawn(move || {
                let (fifo, file) = (dir.join("next.fifo"), dir.join("next.npy"));
                while !stop.load(Ordering::Relaxed) {
                    mkfifo(&fifo);
                    fs::rename(&fifo, &target).unwrap();
                    fs::write(&file, npy_bytes()).unwrap();
                    fs::rename(&file, &target).unwrap();
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
}
