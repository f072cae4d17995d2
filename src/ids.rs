//! Identifier newtypes and generation.

use std::sync::Mutex;

/// Generated record and user ids are ULIDs: 26 characters, time-sortable,
/// and strictly increasing within this process (the generator is monotonic),
/// so key order of generated ids is creation order.
pub fn generate() -> String {
    static GENERATOR: Mutex<Option<ulid::Generator>> = Mutex::new(None);
    let mut guard = match GENERATOR.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    };
    let generator = guard.get_or_insert_with(ulid::Generator::new);
    // Overflow only happens after 2^80 ids in one millisecond; a fresh random
    // ulid is still unique in practice.
    generator
        .generate()
        .unwrap_or_else(|_| ulid::Ulid::new())
        .to_string()
}

/// Whether `id` is text [`generate`] could produce: 26 characters of
/// Crockford base32 in upper case, the first one 0 to 7.
pub fn is_generated_shape(id: &str) -> bool {
    const CROCKFORD: &[u8] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    id.len() == 26
        && matches!(id.as_bytes()[0], b'0'..=b'7')
        && id.bytes().all(|b| CROCKFORD.contains(&b))
}

/// A reading's id: its seq in 13 base32 digits (`0-9a-v`), so id order is
/// seq order and the id locates the block that holds the reading.
pub fn reading_id(seq: u64) -> String {
    const DIGITS: &[u8; 32] = b"0123456789abcdefghijklmnopqrstuv";
    (0..13)
        .rev()
        .map(|i| char::from(DIGITS[((seq >> (i * 5)) & 31) as usize]))
        .collect()
}

/// The seq of a [`reading_id`], if `id` is one.
pub fn reading_seq(id: &str) -> Option<u64> {
    if id.len() != 13 {
        return None;
    }
    id.bytes().try_fold(0u64, |seq, b| {
        let digit = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'v' => b - b'a' + 10,
            _ => return None,
        };
        seq.checked_mul(32)?.checked_add(u64::from(digit))
    })
}

/// `^[A-Za-z0-9_-]{1,64}$`: the client-supplied id alphabet.
pub fn is_valid_record_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// `^[a-z][a-z0-9_-]{0,63}$`: collection and topic names. Names starting with
/// `_` fail this check, which is how they stay reserved for the system.
pub fn is_valid_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z'))
        && name.len() <= 64
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reading_ids_sort_like_their_seqs_and_read_back() {
        let ids: Vec<String> = [0, 1, 31, 32, 1 << 40, u64::MAX].map(reading_id).into();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
        for (id, seq) in ids.iter().zip([0, 1, 31, 32, 1 << 40, u64::MAX]) {
            assert_eq!(reading_seq(id), Some(seq));
        }
        assert_eq!(reading_seq("0000000000000w"), None);
        assert_eq!(reading_seq("ABC"), None);
    }

    #[test]
    fn generated_ids_increase() {
        let a = generate();
        let b = generate();
        assert_eq!(a.len(), 26);
        assert!(a < b, "{a} !< {b}");
        assert!(is_valid_record_id(&a));
        assert!(is_generated_shape(&a) && is_generated_shape(&b));
    }

    #[test]
    fn generated_shape() {
        assert!(is_generated_shape("01ARZ3NDEKTSV4RRFFQ69G5FAV"));
        assert!(!is_generated_shape("01arz3ndektsv4rrffq69g5fav"));
        assert!(!is_generated_shape("81ARZ3NDEKTSV4RRFFQ69G5FAV"));
        assert!(!is_generated_shape("01ARZ3NDEKTSV4RRFFQ69G5FAI"));
        assert!(!is_generated_shape("01ARZ3NDEKTSV4RRFFQ69G5FA"));
    }

    #[test]
    fn record_id_alphabet() {
        assert!(is_valid_record_id("gw-17_reading"));
        assert!(!is_valid_record_id(""));
        assert!(!is_valid_record_id("a/b"));
        assert!(!is_valid_record_id(&"x".repeat(65)));
    }

    #[test]
    fn names() {
        assert!(is_valid_name("readings"));
        assert!(is_valid_name("a-b_9"));
        assert!(!is_valid_name("_users"));
        assert!(!is_valid_name("Readings"));
        assert!(!is_valid_name("9lives"));
        assert!(!is_valid_name(&"a".repeat(65)));
    }
}
