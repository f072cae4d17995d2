//! Deterministic fuzzing: the parser must never panic, and on expressions
//! that do parse, `can_be_true_for` and `index_constraints` must agree with
//! actual evaluation over many random records.

use serde_json::{json, Map, Value};

use super::{alice, bob, NOW};
use crate::rules::{EvalContext, Expr, UserContext};

/// xorshift64*: tiny, deterministic, good enough to scatter test inputs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
}

const FRAGMENTS: &[&str] = &[
    "(",
    ")",
    "!",
    "&&",
    "||",
    "&",
    "|",
    "=",
    "==",
    "!=",
    "<",
    "<=",
    ">",
    ">=",
    "~",
    "in",
    "[",
    "]",
    ",",
    "'a'",
    "\"b\\\"\"",
    "'unterminated",
    "\\",
    "1",
    "-2.5e3",
    "1e999",
    "-",
    ".",
    "@user",
    "@user.id",
    "@user.roles",
    "@now",
    "@foo",
    "@",
    "a",
    "a.b",
    "a.",
    "true",
    "false",
    "null",
    " ",
    "  ",
    "é",
    "😀",
    "\n",
    "'\\q'",
    "0.",
    "9999999999999999999999",
];

const OPERANDS: &[&str] = &[
    "a",
    "b",
    "meta.site",
    "tags",
    "owner",
    "created",
    "1",
    "2.5",
    "-3",
    "'x'",
    "'north'",
    "true",
    "false",
    "null",
    "['x', 1]",
    "[@user.id, 'u2']",
    "[]",
    "@user.id",
    "@user.roles",
    "@user.tenant",
    "@user.email",
    "@now",
    "@user",
    "'2026-01-01T00:00:00.000Z'",
    "'u1'",
];

const OPS: &[&str] = &["=", "==", "!=", "<", "<=", ">", ">=", "in", "~"];

fn garbage(rng: &mut Rng) -> String {
    let len = rng.below(24);
    let mut out = String::new();
    for _ in 0..len {
        if rng.below(8) == 0 {
            out.push(char::from(rng.below(128) as u8));
        } else {
            out.push_str(rng.pick(FRAGMENTS));
        }
    }
    out
}

fn expression(rng: &mut Rng, depth: usize) -> String {
    let choice = rng.below(if depth > 3 { 4 } else { 9 });
    match choice {
        0..=2 => {
            let lhs = rng.pick(OPERANDS);
            let op = rng.pick(OPS);
            let rhs = rng.pick(OPERANDS);
            format!("{lhs} {op} {rhs}")
        }
        3 => rng.pick(OPERANDS).to_owned(),
        4 | 5 => format!(
            "{} && {}",
            expression(rng, depth + 1),
            expression(rng, depth + 1)
        ),
        6 => format!(
            "{} || {}",
            expression(rng, depth + 1),
            expression(rng, depth + 1)
        ),
        7 => format!("!({})", expression(rng, depth + 1)),
        _ => format!("({})", expression(rng, depth + 1)),
    }
}

fn random_record(rng: &mut Rng) -> Map<String, Value> {
    let pool = [
        json!(1),
        json!(2.5),
        json!(-3),
        json!("x"),
        json!("north"),
        json!("u1"),
        json!(true),
        json!(false),
        Value::Null,
        json!(["x", 1]),
        json!(["u1"]),
        json!({"site": "north"}),
        json!("2026-01-01T00:00:00.000Z"),
    ];
    let mut map = Map::new();
    for key in ["a", "b", "tags", "owner", "created", "meta"] {
        if rng.below(4) != 0 {
            map.insert(key.to_owned(), pool[rng.below(pool.len())].clone());
        }
    }
    map
}

fn lookup<'a>(record: &'a Map<String, Value>, path: &str) -> &'a Value {
    let mut segments = path.split('.');
    let first = segments.next().and_then(|s| record.get(s));
    segments
        .try_fold(first, |cur, seg| {
            Some(cur.and_then(|v| v.as_object()).and_then(|o| o.get(seg)))
        })
        .flatten()
        .unwrap_or(&Value::Null)
}

/// Runs every entry point; the point is that none of them panics.
fn exercise(expr: &Expr, records: &[Map<String, Value>], users: &[Option<&UserContext>]) {
    let _ = expr.fields();
    for user in users {
        let _ = expr.can_be_true_for(*user, NOW);
        let _ = expr.index_constraints(*user, NOW);
        for record in records {
            let _ = expr.evaluate(&EvalContext::new(record, *user, NOW));
        }
    }
}

#[test]
fn garbage_never_panics() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let alice = alice();
    let users = [None, Some(&alice)];
    let records: Vec<_> = (0..4).map(|_| random_record(&mut rng)).collect();
    let mut parsed = 0;
    for _ in 0..30_000 {
        let src = garbage(&mut rng);
        match Expr::parse(&src) {
            Ok(expr) => {
                parsed += 1;
                assert_eq!(expr.source(), src);
                exercise(&expr, &records, &users);
            }
            Err(err) => {
                assert!(err.position <= src.chars().count(), "{src:?}: {err}");
                assert!(!err.message.is_empty());
            }
        }
    }
    // The fragments are chosen so some garbage is valid; make sure it was.
    assert!(parsed > 100, "only {parsed} inputs parsed");
}

#[test]
fn mutated_valid_expressions_never_panic() {
    let mut rng = Rng(42);
    let alice = alice();
    let users = [None, Some(&alice)];
    let records: Vec<_> = (0..3).map(|_| random_record(&mut rng)).collect();
    for _ in 0..5_000 {
        let mut chars: Vec<char> = expression(&mut rng, 0).chars().collect();
        for _ in 0..=rng.below(3) {
            let at = rng.below(chars.len() + 1);
            match rng.below(3) {
                0 if at < chars.len() => {
                    chars.remove(at);
                }
                1 => chars.insert(
                    at,
                    rng.pick(&['(', ')', '\'', '"', '!', '[', '.', '@', '-']),
                ),
                _ => chars.insert(at, char::from(rng.below(128) as u8)),
            }
        }
        let src: String = chars.into_iter().collect();
        match Expr::parse(&src) {
            Ok(expr) => exercise(&expr, &records, &users),
            Err(err) => assert!(err.position <= src.chars().count(), "{src:?}: {err}"),
        }
    }
}

#[test]
fn analysis_agrees_with_evaluation() {
    let mut rng = Rng(7);
    let (alice, bob) = (alice(), bob());
    let users = [None, Some(&alice), Some(&bob)];
    let records: Vec<_> = (0..60).map(|_| random_record(&mut rng)).collect();
    let (mut matched, mut impossible, mut constrained) = (0, 0, 0);
    for _ in 0..3_000 {
        let src = expression(&mut rng, 0);
        let expr = Expr::parse(&src).unwrap_or_else(|e| panic!("{src:?}: {e}"));
        for user in users {
            let possible = expr.can_be_true_for(user, NOW);
            let constraints = expr.index_constraints(user, NOW);
            impossible += usize::from(!possible);
            constrained += usize::from(!constraints.is_empty());
            for record in &records {
                if !expr.matches(&EvalContext::new(record, user, NOW)) {
                    continue;
                }
                matched += 1;
                assert!(possible, "{src:?} matched {record:?} but was ruled out");
                for c in &constraints {
                    assert!(
                        c.is_satisfied_by(lookup(record, &c.field)),
                        "{src:?} matched {record:?} but violates {c}"
                    );
                }
            }
        }
    }
    // Guard against a generator that silently stops exercising anything.
    assert!(matched > 10_000, "matched {matched}");
    assert!(impossible > 100, "impossible {impossible}");
    assert!(constrained > 1_000, "constrained {constrained}");
}
