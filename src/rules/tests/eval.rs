use serde_json::json;

use super::{alice, bob, check, check_anon, eval_err, expr, record, run_as, NOW};
use crate::rules::{EvalContext, Expr};

#[test]
fn equality_and_inequality() {
    let rec = || json!({"status": "open", "n": 3});
    assert!(check("status = 'open'", rec()));
    assert!(check("status == 'open'", rec()));
    assert!(!check("status = 'closed'", rec()));
    assert!(check("status != 'closed'", rec()));
    assert!(!check("status != 'open'", rec()));
    assert!(check("'open' = status", rec()));
    assert!(check("n = 3", rec()));
    assert!(!check("n = 4", rec()));
}

#[test]
fn numbers_compare_numerically() {
    assert!(check("n = 1", json!({"n": 1.0})));
    assert!(check("1 = 1.0", json!({})));
    assert!(check("n = -0", json!({"n": 0.0})));
    assert!(check("n = 1.5e1", json!({"n": 15})));
    assert!(check("n = 18446744073709551615", json!({"n": u64::MAX})));
    assert!(check("n > -1", json!({"n": u64::MAX})));
    assert!(check("n < 1", json!({"n": i64::MIN})));
    // Doubles, as in JavaScript: 2^53 + 1 rounds to 2^53.
    assert!(check(
        "n = 9007199254740993",
        json!({"n": 9007199254740992.0})
    ));
    assert!(!check(
        "n > 9007199254740992",
        json!({"n": 9007199254740993u64})
    ));
    assert!(check(
        "n > 9007199254740992",
        json!({"n": 9007199254740994u64})
    ));
    assert!(check("n < 2.5", json!({"n": 2})));
    assert!(check("n > 2.5", json!({"n": 3})));
    assert!(check("n <= 3.0", json!({"n": 3})));
    assert!(check("n >= -2.5", json!({"n": -2})));
}

#[test]
fn ordering_operators() {
    let rec = || json!({"temp": 30, "name": "bob"});
    assert!(check("temp < 31", rec()));
    assert!(!check("temp < 30", rec()));
    assert!(check("temp <= 30", rec()));
    assert!(!check("temp <= 29.99", rec()));
    assert!(check("temp > 29", rec()));
    assert!(!check("temp > 30", rec()));
    assert!(check("temp >= 30", rec()));
    assert!(!check("temp >= 30.5", rec()));
    assert!(check("name > 'alice'", rec()));
    assert!(check("name < 'bobby'", rec()));
    assert!(check("name >= 'bob'", rec()));
    // Byte order: uppercase sorts before lowercase.
    assert!(check("'Zed' < 'abc'", json!({})));
}

#[test]
fn type_mismatches_are_false_not_errors() {
    let rec = || json!({"n": 1, "s": "1", "flag": true, "list": [1], "obj": {"a": 1}});
    assert!(!check("n = '1'", rec()));
    assert!(check("n != '1'", rec()));
    assert!(!check("s = 1", rec()));
    assert!(!check("flag = 1", rec()));
    assert!(!check("n < '2'", rec()));
    assert!(!check("s > 0", rec()));
    assert!(!check("flag >= false", rec()));
    assert!(!check("list > 0", rec()));
    assert!(!check("obj = 1", rec()));
    assert!(!check("n in 1", rec()));
    assert!(!check("n in 'abc'", rec()));
    assert!(!check("n ~ 1", rec()));
    assert!(!check("s ~ 1", rec()));
}

#[test]
fn null_and_missing_fields() {
    assert!(check("x = null", json!({})));
    assert!(check("x = null", json!({"x": null})));
    assert!(!check("x = null", json!({"x": 0})));
    assert!(!check("x = null", json!({"x": ""})));
    assert!(!check("x != null", json!({})));
    assert!(check("x != null", json!({"x": false})));
    assert!(check("null = null", json!({})));
    assert!(check("x = y", json!({})));
    assert!(!check("x < 1", json!({})));
    assert!(!check("x >= 1", json!({"x": null})));
    assert!(!check("x <= null", json!({"x": null})));
    assert!(!check("x > null", json!({"x": 3})));
    assert!(check("x in [null]", json!({})));
}

#[test]
fn nested_fields() {
    assert!(check(
        "meta.site = \"north\"",
        json!({"meta": {"site": "north"}})
    ));
    assert!(!check(
        "meta.site = \"north\"",
        json!({"meta": {"site": "south"}})
    ));
    assert!(check("meta.site = null", json!({})));
    assert!(check("meta.site = null", json!({"meta": "north"})));
    assert!(check("meta.site = null", json!({"meta": ["site"]})));
    assert!(check("a.b.c > 1", json!({"a": {"b": {"c": 2}}})));
    assert!(check(
        "meta = other",
        json!({"meta": {"a": 1, "b": [1, 2]}, "other": {"b": [1.0, 2], "a": 1.0}})
    ));
    assert!(!check(
        "meta = other",
        json!({"meta": {"a": 1}, "other": {"a": 1, "b": 2}})
    ));
}

#[test]
fn lists_and_in() {
    let rec = || json!({"level": "warn", "n": 2.0, "shared_with": ["u1", "u3"]});
    assert!(check("level in ['warn', 'crit']", rec()));
    assert!(!check("level in ['info']", rec()));
    assert!(!check("!(level in ['warn','crit'])", rec()));
    assert!(check("!(level in ['info','debug'])", rec()));
    assert!(check("n in [1, 2]", rec()));
    assert!(!check("level in []", rec()));
    assert!(check("@user.id in shared_with", rec()));
    assert!(!check("'u2' in shared_with", rec()));
    assert!(!check("@user.id in missing", rec()));
    assert!(check("level in [@user.id, 'warn']", rec()));
    assert!(check("'u1' in [@user.id]", rec()));
    assert!(check("shared_with = ['u1', 'u3']", rec()));
    assert!(!check("shared_with = ['u3', 'u1']", rec()));
    assert!(check("[1, [2, 'x']] = [1.0, [2, 'x']]", json!({})));
    assert!(check("[@user.id, @now] = ['u1', @now]", json!({})));
    assert!(check("[1] in [[1], [2]]", json!({})));
    assert!(check("'collector' in @user.roles", json!({})));
    assert!(!check("'admin' in @user.roles", json!({})));
    assert!(check("'north' in @user.groups", json!({})));
    assert!(check("@user.roles = ['collector', 'viewer']", json!({})));
}

#[test]
fn contains_operator() {
    let rec = || json!({"name": "hello world", "tags": ["a", "b", 3]});
    assert!(check("name ~ 'lo wo'", rec()));
    assert!(check("name ~ ''", rec()));
    assert!(!check("name ~ 'xyz'", rec()));
    assert!(check("tags ~ 'a'", rec()));
    assert!(check("tags ~ 3.0", rec()));
    assert!(!check("tags ~ 'c'", rec()));
    assert!(!check("tags ~ 'b' && name ~ 'x'", rec()));
    assert!(check("@user.roles ~ 'viewer'", json!({})));
    assert!(check("@user.email ~ '@example.com'", json!({})));
    assert!(!check("missing ~ 'a'", rec()));
}

#[test]
fn logical_operators_and_short_circuit() {
    let rec = || json!({"ok": true, "no": false, "temp": 5, "word": "yes"});
    assert!(check("true && true", rec()));
    assert!(!check("true && false", rec()));
    assert!(check("false || true", rec()));
    assert!(!check("false || false", rec()));
    assert!(check("!false", rec()));
    assert!(!check("!true", rec()));
    assert!(check("!!true", rec()));
    assert!(check("ok && temp > 3", rec()));
    assert!(!check("no && temp > 3", rec()));
    assert!(check("ok", rec()));
    assert!(!check("no", rec()));
    // The right side is never looked at, so it cannot fail.
    assert!(!check("false && 5", rec()));
    assert!(check("true || word", rec()));
    assert!(!check("no && missing", rec()));
}

#[test]
fn non_boolean_conditions_are_errors() {
    let rec = || json!({"temp": 5, "word": "yes"});
    let err = eval_err("temp && true", rec());
    assert_eq!(
        err.message,
        "field 'temp' is a number, but a condition must be a boolean"
    );
    assert_eq!(err.to_string(), err.message);
    assert!(eval_err("missing", rec()).message.contains("null"));
    assert!(eval_err("!word", rec()).message.contains("a string"));
    assert!(eval_err("false || 5", rec())
        .message
        .contains("the value 5"));
    assert!(eval_err("null", rec()).message.contains("null"));
    assert!(eval_err("@user", rec()).message.contains("@user is a user"));
    assert!(eval_err("['a']", rec()).message.contains("a list"));
    // An error is not rescued by a later `true`.
    eval_err("word || true", rec());
    let e = expr("word || true");
    let rec = record(rec());
    assert!(!e.matches(&EvalContext::new(&rec, Some(&alice()), NOW)));
}

#[test]
fn precedence_levels() {
    let rec = || json!({"a": 1, "b": 0, "c": 0});
    // && binds tighter than ||.
    assert!(check("a = 1 || b = 1 && c = 1", rec()));
    assert!(!check("(a = 1 || b = 1) && c = 1", rec()));
    assert!(check("b = 1 && c = 1 || a = 1", rec()));
    assert!(check("true || false && false", rec()));
    // ! binds tighter than && and ||, but looser than comparisons.
    assert!(!check("!a = 1", rec()));
    assert!(check("!a = 2", rec()));
    assert!(!check("!true && false", rec()));
    assert!(check("!(true && false)", rec()));
    assert!(check("!false || false", rec()));
    assert!(!check("!(false || true)", rec()));
    assert!(check("!b = 1 && !c = 1", rec()));
    // Parentheses around a plain value are just that value.
    assert!(check("(a) = (1)", rec()));
}

#[test]
fn anonymous_caller() {
    let rec = || json!({"owner": "u1", "tenant": "t1"});
    assert!(!check_anon("@user != null", rec()));
    assert!(check_anon("@user = null", rec()));
    assert!(check_anon("@user.id = null", rec()));
    assert!(check_anon("@user.roles = null", rec()));
    assert!(!check_anon("owner = @user.id", rec()));
    assert!(!check_anon("tenant = @user.tenant", rec()));
    assert!(!check_anon("'collector' in @user.roles", rec()));
    assert!(!check_anon("@user.groups ~ 'north'", rec()));
    // `x = null` also holds for missing fields: an ownerless record matches.
    assert!(check_anon("owner = @user.id", json!({})));
    assert!(!check_anon("@user != null && owner = @user.id", json!({})));
}

#[test]
fn signed_in_caller() {
    let rec = || json!({"owner": "u1", "tenant": "t1", "shared_with": ["u2"]});
    assert!(check("@user != null", rec()));
    assert!(!check("@user = null", rec()));
    assert!(check("owner = @user.id", rec()));
    assert!(check("tenant = @user.tenant", rec()));
    assert!(check("@user.email = 'alice@example.com'", rec()));
    assert!(check("owner = @user.id || @user.id in shared_with", rec()));
    let bob = bob();
    let as_bob = |src: &str| run_as(src, rec(), Some(&bob)).unwrap_or_else(|e| panic!("{e}"));
    assert!(as_bob("owner = @user.id || @user.id in shared_with"));
    assert!(!as_bob("owner = @user.id"));
    assert!(as_bob("@user.email = null"));
    assert!(!as_bob("tenant = @user.tenant"));
    assert!(as_bob("@user.roles = []"));
    assert!(as_bob("@user = @user"));
    assert!(!as_bob("@user = 'u2'"));
}

#[test]
fn now_comparisons() {
    assert!(check(
        "created < @now",
        json!({"created": "2026-11-22T06:12:34.122Z"})
    ));
    assert!(!check("created < @now", json!({"created": NOW})));
    assert!(check("created <= @now", json!({"created": NOW})));
    assert!(!check(
        "created < @now",
        json!({"created": "2027-01-01T00:00:00.000Z"})
    ));
    assert!(check(
        "@now > created",
        json!({"created": "2025-12-31T23:59:59.999Z"})
    ));
    assert!(!check("created < @now", json!({})));
    assert!(!check("created < @now", json!({"created": 5})));
    assert!(check("@now = '2026-11-22T06:12:34.123Z'", json!({})));
}

#[test]
fn brief_examples_behave() {
    let device = json!({"device": "gw-7", "temp": 31.5});
    assert!(check("device = 'gw-7' && temp > 30", device.clone()));
    assert!(!check("device = 'gw-7' && temp > 31.5", device));
    assert!(check("'collector' in @user.roles", json!({})));
    assert!(check("true", json!({})));
    assert!(!check("false", json!({})));
}

#[test]
fn evaluation_reuses_a_parsed_expression() {
    let e = Expr::parse("temp > 30").unwrap();
    let hot = record(json!({"temp": 31}));
    let cold = record(json!({"temp": 29}));
    for _ in 0..3 {
        assert!(e.matches(&EvalContext::new(&hot, None, NOW)));
        assert!(!e.matches(&EvalContext::new(&cold, None, NOW)));
    }
}
