//! WebDataset-style tar shards, memory-mapped and indexed once.
//!
//! Each shard is mapped whole ([`FileMap`]: private, SIGBUS-safe) and its headers are walked
//! once: ustar, GNU long names (`L`) and pax `path=` records are understood, directories and
//! links skipped. Members are grouped into samples as WebDataset does: consecutive members
//! whose paths agree up to the first `.` of the file name share a key (`a/b/000123.jpg` and
//! `a/b/000123.cls` form sample `a/b/000123`); the rest of the name, lowercased, is the
//! extension. A sample's image is its `.jpg`, `.jpeg` or `.png` member, handed to the decoder
//! as a slice of the map (no copy); its label is the integer in `.cls` (or `.txt`).

use std::fs::File;
use std::ops::Range;
use std::path::{Path, PathBuf};

use super::filemap::FileMap;

const BLOCK: usize = 512;

/// Why a shard could not be indexed. Every message names the shard and, where there is one,
/// the member.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TarError {
    /// The OS refused to open or map the shard.
    #[error("{}: cannot {op}: {source}", shard.display())]
    Io {
        /// The shard.
        shard: PathBuf,
        /// `"open"` or `"memory-map"`.
        op: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The shard ends inside a header or a member's data, or before the end-of-archive
    /// blocks that every tar writer adds.
    #[error("{}: the shard is cut short inside or after member {member:?} (it needs {needed} bytes, the file has {size}); the download or copy was incomplete", shard.display())]
    Truncated {
        /// The shard.
        shard: PathBuf,
        /// The member (or `"(header)"`).
        member: String,
        /// Bytes the member needs up to its end.
        needed: usize,
        /// The shard's size.
        size: usize,
    },
    /// A header that is not a tar header.
    #[error("{}: {reason} at byte {offset}; this is not a valid tar file", shard.display())]
    Corrupt {
        /// The shard.
        shard: PathBuf,
        /// Where.
        offset: usize,
        /// What is wrong.
        reason: String,
    },
    /// A member whose path is absolute or climbs out with `..`.
    #[error("{}: member {member:?} has a path outside the archive (absolute or with '..'); refusing the shard", shard.display())]
    UnsafePath {
        /// The shard.
        shard: PathBuf,
        /// The member's path.
        member: String,
    },
    /// A sample with no image member, or a label that is not an integer.
    #[error("{}: sample {key:?}: {reason}", shard.display())]
    BadSample {
        /// The shard.
        shard: PathBuf,
        /// The WebDataset key.
        key: String,
        /// What is wrong.
        reason: String,
    },
}

/// One sample of a shard: where its image lies, and its label.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TarSample {
    /// Which shard (index into [`TarShards::paths`]).
    pub shard: usize,
    /// The image member's path in the shard.
    pub member: String,
    /// The image member's bytes in the shard's map.
    pub image: Range<usize>,
    /// The `.cls`/`.txt` integer, if the sample has one.
    pub label: Option<i64>,
}

/// Indexed, memory-mapped shards.
#[derive(Debug)]
pub struct TarShards {
    maps: Vec<FileMap>,
    samples: Vec<TarSample>,
}

impl TarShards {
    /// Maps and indexes `paths`, in order.
    pub fn open(paths: &[PathBuf]) -> Result<TarShards, TarError> {
        let mut maps = Vec::with_capacity(paths.len());
        let mut samples = Vec::new();
        for (shard, path) in paths.iter().enumerate() {
            let io = |op, source| TarError::Io {
                shard: path.clone(),
                op,
                source,
            };
            let file = File::open(path).map_err(|e| io("open", e))?;
            let map = FileMap::new(file, path).map_err(|e| io("memory-map", e))?;
            index(path, shard, map.bytes(), &mut samples)?;
            maps.push(map);
        }
        Ok(TarShards { maps, samples })
    }

    /// The samples, shard by shard in member order.
    pub fn samples(&self) -> &[TarSample] {
        &self.samples
    }

    /// The shards' paths.
    pub fn paths(&self) -> impl Iterator<Item = &Path> {
        self.maps.iter().map(|m| m.state().path())
    }

    /// The image bytes of sample `index`, in place.
    pub fn image(&self, index: usize) -> Option<&[u8]> {
        let s = self.samples.get(index)?;
        self.maps[s.shard].bytes().get(s.image.clone())
    }

    /// `shard.tar:member` for messages.
    pub fn name(&self, index: usize) -> String {
        match self.samples.get(index) {
            Some(s) => format!(
                "{}:{}",
                self.maps[s.shard].state().path().display(),
                s.member
            ),
            None => format!("sample {index}"),
        }
    }

    /// Fails when a shard changed after it was mapped.
    pub fn check(&self) -> Result<(), super::SourceChanged> {
        self.maps.iter().try_for_each(FileMap::check)
    }
}

fn text(field: &[u8]) -> String {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    String::from_utf8_lossy(&field[..end]).into_owned()
}

/// A numeric header field: octal text, or GNU base-256 when the high bit is set.
fn number(field: &[u8]) -> Option<u64> {
    if field.first().is_some_and(|b| b & 0x80 != 0) {
        let mut v: u64 = u64::from(field[0] & 0x7F);
        for &b in &field[1..] {
            v = v.checked_mul(256)?.checked_add(u64::from(b))?;
        }
        return Some(v);
    }
    let digits = text(field);
    let digits = digits.trim_matches(|c: char| c == ' ' || c == '\0');
    if digits.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(digits, 8).ok()
}

fn checksum_ok(header: &[u8]) -> bool {
    let Some(stored) = number(&header[148..156]) else {
        return false;
    };
    let sum: u64 = header
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u64::from(b)
            }
        })
        .sum();
    sum == stored
}

/// `path=` from pax extended-header records (`"<len> key=value\n"`).
fn pax_path(data: &[u8]) -> Option<String> {
    let mut rest = data;
    while !rest.is_empty() {
        let space = rest.iter().position(|&b| b == b' ')?;
        let len: usize = std::str::from_utf8(&rest[..space]).ok()?.parse().ok()?;
        let record = rest.get(space + 1..len)?;
        if let Some(value) = record.strip_prefix(b"path=") {
            return Some(
                String::from_utf8_lossy(value.strip_suffix(b"\n").unwrap_or(value)).into_owned(),
            );
        }
        rest = &rest[len..];
    }
    None
}

fn unsafe_path(path: &str) -> bool {
    path.starts_with('/') || path.split('/').any(|part| part == "..")
}

/// WebDataset's split: key up to the first `.` of the file name, extension after it.
fn split_key(path: &str) -> (&str, String) {
    let slash = path.rfind('/').map_or(0, |i| i + 1);
    match path[slash..].find('.') {
        Some(dot) => (
            &path[..slash + dot],
            path[slash + dot + 1..].to_ascii_lowercase(),
        ),
        None => (path, String::new()),
    }
}

#[derive(Default)]
struct Group {
    key: String,
    image: Option<(String, Range<usize>)>,
    label: Option<i64>,
}

fn index(
    shard_path: &Path,
    shard: usize,
    bytes: &[u8],
    out: &mut Vec<TarSample>,
) -> Result<(), TarError> {
    let shard_err = || shard_path.to_path_buf();
    let mut at = 0;
    let mut long_name: Option<String> = None;
    let mut group: Option<Group> = None;
    let flush = |g: Option<Group>, out: &mut Vec<TarSample>| -> Result<(), TarError> {
        let Some(g) = g else { return Ok(()) };
        let Some((member, image)) = g.image else {
            return Err(TarError::BadSample {
                shard: shard_err(),
                key: g.key,
                reason: "it has no .jpg, .jpeg or .png member".to_owned(),
            });
        };
        out.push(TarSample {
            shard,
            member,
            image,
            label: g.label,
        });
        Ok(())
    };
    let mut ended = false;
    let mut last: Option<String> = None;
    while at + BLOCK <= bytes.len() {
        let header = &bytes[at..at + BLOCK];
        if header.iter().all(|&b| b == 0) {
            ended = true; // end-of-archive marker
            break;
        }
        if !checksum_ok(header) {
            return Err(TarError::Corrupt {
                shard: shard_err(),
                offset: at,
                reason: "a header checksum does not match".to_owned(),
            });
        }
        let mut name = text(&header[..100]);
        if &header[257..262] == b"ustar" {
            let prefix = text(&header[345..500]);
            if !prefix.is_empty() {
                name = format!("{prefix}/{name}");
            }
        }
        if let Some(long) = long_name.take() {
            name = long;
        }
        let size = number(&header[124..136])
            .and_then(|s| usize::try_from(s).ok())
            .ok_or_else(|| TarError::Corrupt {
                shard: shard_err(),
                offset: at + 124,
                reason: format!("member {name:?} has an invalid size field"),
            })?;
        let start = at + BLOCK;
        let end = start
            .checked_add(size)
            .filter(|&e| e <= bytes.len())
            .ok_or_else(|| TarError::Truncated {
                shard: shard_err(),
                member: name.clone(),
                needed: start.saturating_add(size),
                size: bytes.len(),
            })?;
        let data = &bytes[start..end];
        at = start + size.div_ceil(BLOCK) * BLOCK;
        last = Some(name.clone());
        match header[156] {
            b'L' => {
                long_name = Some(text(data));
                continue;
            }
            b'x' => {
                long_name = pax_path(data);
                continue;
            }
            b'0' | 0 | b'7' => {}
            _ => continue, // directories, links, global pax headers: no sample data
        }
        if unsafe_path(&name) {
            return Err(TarError::UnsafePath {
                shard: shard_err(),
                member: name,
            });
        }
        let (key, ext) = split_key(&name);
        if group.as_ref().is_none_or(|g| g.key != key) {
            flush(group.take(), out)?;
            group = Some(Group {
                key: key.to_owned(),
                ..Group::default()
            });
        }
        let g = group.as_mut().expect("a group was just started");
        match ext.as_str() {
            "jpg" | "jpeg" | "png" if g.image.is_none() => g.image = Some((name, start..end)),
            "cls" | "txt" if g.label.is_none() || ext == "cls" => {
                let value = String::from_utf8_lossy(data);
                let value = value.trim();
                match value.parse::<i64>() {
                    Ok(v) => g.label = Some(v),
                    Err(_) if ext == "txt" => {} // a caption, not a label
                    Err(_) => {
                        return Err(TarError::BadSample {
                            shard: shard_err(),
                            key: g.key.clone(),
                            reason: format!("{name:?} holds {value:?}, not an integer class label"),
                        })
                    }
                }
            }
            _ => {}
        }
    }
    if !ended {
        // Cut inside a header, inside a member's padding, or exactly between members: tar
        // writers end every archive with zero blocks, so their absence means bytes are lost.
        return Err(TarError::Truncated {
            shard: shard_err(),
            member: last.unwrap_or_else(|| "(the first header)".to_owned()),
            needed: at + BLOCK,
            size: bytes.len(),
        });
    }
    flush(group.take(), out)
}
