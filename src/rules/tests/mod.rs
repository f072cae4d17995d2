//! Unit tests for the rules module, shared helpers here.

mod eval;
mod fuzz;
mod parse;
mod plan;

use serde_json::{Map, Value};

use super::{EvalContext, EvalError, Expr, ParseError, UserContext};

const NOW: &str = "2026-11-22T06:12:34.123Z";

fn record(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("test record must be an object, got {other}"),
    }
}

fn alice() -> UserContext {
    UserContext {
        id: "u1".to_owned(),
        email: Some("alice@example.com".to_owned()),
        roles: vec!["collector".to_owned(), "viewer".to_owned()],
        groups: vec!["north".to_owned()],
        tenant: Some("t1".to_owned()),
    }
}

/// A signed-in user with nothing optional set.
fn bob() -> UserContext {
    UserContext {
        id: "u2".to_owned(),
        ..UserContext::default()
    }
}

fn expr(src: &str) -> Expr {
    Expr::parse(src).unwrap_or_else(|e| panic!("{src:?} should parse, got {e}"))
}

fn run_as(src: &str, rec: Value, user: Option<&UserContext>) -> Result<bool, EvalError> {
    let rec = record(rec);
    expr(src).evaluate(&EvalContext::new(&rec, user, NOW))
}

/// Evaluates for alice and insists on a boolean result.
fn check(src: &str, rec: Value) -> bool {
    run_as(src, rec, Some(&alice())).unwrap_or_else(|e| panic!("{src:?} failed: {e}"))
}

/// Evaluates for an anonymous caller and insists on a boolean result.
fn check_anon(src: &str, rec: Value) -> bool {
    run_as(src, rec, None).unwrap_or_else(|e| panic!("{src:?} failed: {e}"))
}

fn eval_err(src: &str, rec: Value) -> EvalError {
    match run_as(src, rec, Some(&alice())) {
        Ok(b) => panic!("{src:?} should fail to evaluate, got {b}"),
        Err(e) => e,
    }
}

fn parse_err(src: &str) -> ParseError {
    match Expr::parse(src) {
        Ok(e) => panic!("{src:?} should not parse, got {e:?}"),
        Err(e) => e,
    }
}

/// Asserts the error position and that the message contains `needle`.
fn assert_parse_err(src: &str, position: usize, needle: &str) {
    let err = parse_err(src);
    assert_eq!(err.position, position, "position for {src:?}: {err}");
    assert!(
        err.message.contains(needle),
        "message for {src:?} should contain {needle:?}, got {:?}",
        err.message
    );
}
