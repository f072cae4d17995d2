//! Column codecs: numbers through pco, strings as a per-block dictionary
//! (distinct strings once, then one small index per reading through pco).

use pco::data_types::Number;

use super::block::{DecodeError, EncodeError, PCO_LEVEL};
use super::wire::{put_bytes, put_varint, Cursor};

/// pco needs at least one number; an empty column is written as no bytes.
pub(crate) fn encode_nums<T: Number>(nums: &[T]) -> Result<Vec<u8>, EncodeError> {
    if nums.is_empty() {
        return Ok(Vec::new());
    }
    pco::standalone::simpler_compress(nums, PCO_LEVEL).map_err(|e| EncodeError::Codec(e.message))
}

/// Decodes a pco column and checks it holds exactly `n` numbers, so a
/// column swapped or cut by corruption is an error rather than a
/// misaligned block.
pub(crate) fn decode_nums<T: Number>(bytes: &[u8], n: usize) -> Result<Vec<T>, DecodeError> {
    if bytes.is_empty() {
        return if n == 0 {
            Ok(Vec::new())
        } else {
            Err(DecodeError::Truncated)
        };
    }
    // Decode into a buffer of the size the block header gives (itself
    // capped by MAX_READINGS): pco's `simple_decompress` sizes its buffer
    // from the column's own header, and a corrupt one aborted the process
    // on a huge allocation in `corrupt_bodies_never_panic`.
    let mut nums = vec![T::default(); n];
    let progress = pco::standalone::simple_decompress_into(bytes, &mut nums)
        .map_err(|e| DecodeError::Codec(e.message))?;
    if progress.n_processed != n || !progress.finished {
        return Err(DecodeError::Corrupt("column length differs from count"));
    }
    Ok(nums)
}

/// A dictionary column: distinct strings in first-seen order, then the
/// index of each value. `None` is index 0 so an optional column (owner)
/// needs no separate presence bitmap.
pub(crate) fn encode_dict<'a>(
    values: impl Iterator<Item = Option<&'a str>>,
) -> Result<Vec<u8>, EncodeError> {
    let mut dict: Vec<&str> = Vec::new();
    let mut lookup: std::collections::HashMap<&str, u32> = std::collections::HashMap::new();
    let mut indices: Vec<u32> = Vec::new();
    for value in values {
        let index = match value {
            None => 0,
            Some(s) => match lookup.get(s) {
                Some(&i) => i,
                None => {
                    dict.push(s);
                    let i = u32::try_from(dict.len()).map_err(|_| EncodeError::TooLarge)?;
                    lookup.insert(s, i);
                    i
                }
            },
        };
        indices.push(index);
    }
    let mut out = Vec::new();
    put_varint(&mut out, dict.len() as u64);
    for s in &dict {
        put_bytes(&mut out, s.as_bytes());
    }
    out.extend_from_slice(&encode_nums(&indices)?);
    Ok(out)
}

pub(crate) fn decode_dict(bytes: &[u8], n: usize) -> Result<Vec<Option<String>>, DecodeError> {
    let mut cur = Cursor::new(bytes);
    let size = cur.count()?;
    let mut dict = Vec::with_capacity(size);
    for _ in 0..size {
        dict.push(cur.str()?);
    }
    let indices: Vec<u32> = decode_nums(cur.rest(), n)?;
    indices
        .into_iter()
        .map(|i| match i {
            0 => Ok(None),
            i => dict
                .get(i as usize - 1)
                .map(|s| Some((*s).to_owned()))
                .ok_or(DecodeError::Corrupt("dictionary index out of range")),
        })
        .collect()
}
