use serde_json::{json, Value};

use super::{alice, bob, expr, NOW};
use crate::rules::{CmpOp, Constraint};

fn constraint(field: &str, op: CmpOp, value: Value) -> Constraint {
    Constraint {
        field: field.to_owned(),
        op,
        value,
    }
}

fn constraints(src: &str) -> Vec<Constraint> {
    expr(src).index_constraints(Some(&alice()), NOW)
}

#[test]
fn fields_are_listed_once_in_order() {
    assert_eq!(
        expr("owner = @user.id || meta.site = 'x' && owner != null").fields(),
        vec!["owner", "meta.site"]
    );
    assert_eq!(
        expr("!(level in ['warn']) && 3 < temp && ok && tags ~ 'a'").fields(),
        vec!["level", "temp", "ok", "tags"]
    );
    assert!(expr("true").fields().is_empty());
    assert!(expr("'a' in @user.roles && @now > '2020'")
        .fields()
        .is_empty());
}

#[test]
fn can_be_true_for_user_only_conditions() {
    let alice = alice();
    let bob = bob();
    let cbt = |src: &str, user| expr(src).can_be_true_for(user, NOW);
    assert!(!cbt("@user != null", None));
    assert!(cbt("@user != null", Some(&alice)));
    assert!(cbt("'collector' in @user.roles", Some(&alice)));
    assert!(!cbt("'admin' in @user.roles", Some(&alice)));
    assert!(!cbt("'collector' in @user.roles", None));
    assert!(!cbt("@user != null && owner = @user.id", None));
    assert!(cbt("@user != null && owner = @user.id", Some(&bob)));
    assert!(cbt("owner = @user.id", None));
    assert!(cbt("@user = null || status = 'public'", Some(&alice)));
    assert!(!cbt("!(@user != null)", Some(&alice)));
    assert!(cbt("@user.tenant = 't1' && x = 1", Some(&alice)));
    assert!(!cbt("@user.tenant = 't1' && x = 1", Some(&bob)));
    assert!(cbt("true", None));
    assert!(!cbt("false", None));
    assert!(cbt("created < @now", None));
    assert!(!cbt("@now < '2000-01-01'", None));
    assert!(cbt("@now > '2000-01-01'", None));
}

#[test]
fn can_be_true_for_respects_errors_and_short_circuit() {
    let cbt = |src: &str| expr(src).can_be_true_for(None, NOW);
    assert!(!cbt("5 || true"));
    assert!(cbt("true || 5"));
    assert!(!cbt("false && 5"));
    assert!(!cbt("!5"));
    assert!(!cbt("@user"));
    // An unknown field may be a boolean, so it may be true.
    assert!(cbt("flag || 5"));
    assert!(cbt("flag"));
    assert!(cbt("!flag"));
    assert!(!cbt("flag && false"));
    assert!(!cbt("a = 1 && @user != null"));
    assert!(cbt("!(a = 1 && @user != null)"));
    assert!(cbt("a = 1 || @user != null"));
}

#[test]
fn or_yields_no_constraints() {
    assert!(constraints("a = 1 || b = 2").is_empty());
    assert!(constraints("(a = 1 || b = 2)").is_empty());
}

#[test]
fn nested_and_groups_are_flattened() {
    assert_eq!(
        constraints("(a = 1 && b > 2) && c = 'x'"),
        vec![
            constraint("a", CmpOp::Eq, json!(1)),
            constraint("b", CmpOp::Gt, json!(2)),
            constraint("c", CmpOp::Eq, json!("x")),
        ]
    );
    assert_eq!(
        constraints("a <= 1 && ((b >= 2 && (c < 3)) && d == 4)"),
        vec![
            constraint("a", CmpOp::Le, json!(1)),
            constraint("b", CmpOp::Ge, json!(2)),
            constraint("c", CmpOp::Lt, json!(3)),
            constraint("d", CmpOp::Eq, json!(4)),
        ]
    );
}

#[test]
fn value_on_the_left_is_flipped() {
    assert_eq!(
        constraints("3 < temp"),
        vec![constraint("temp", CmpOp::Gt, json!(3))]
    );
    assert_eq!(
        constraints("3 <= temp"),
        vec![constraint("temp", CmpOp::Ge, json!(3))]
    );
    assert_eq!(
        constraints("5 > t"),
        vec![constraint("t", CmpOp::Lt, json!(5))]
    );
    assert_eq!(
        constraints("5 >= t"),
        vec![constraint("t", CmpOp::Le, json!(5))]
    );
    assert_eq!(
        constraints("'x' = a"),
        vec![constraint("a", CmpOp::Eq, json!("x"))]
    );
}

#[test]
fn references_are_resolved() {
    assert_eq!(
        constraints("owner = @user.id && created < @now && meta.site = @user.tenant"),
        vec![
            constraint("owner", CmpOp::Eq, json!("u1")),
            constraint("created", CmpOp::Lt, json!(NOW)),
            constraint("meta.site", CmpOp::Eq, json!("t1")),
        ]
    );
    // Anonymous: only ownerless records can match, which `owner = null` says.
    assert_eq!(
        expr("owner = @user.id").index_constraints(None, NOW),
        vec![constraint("owner", CmpOp::Eq, Value::Null)]
    );
    assert_eq!(
        expr("email = @user.email").index_constraints(Some(&bob()), NOW),
        vec![constraint("email", CmpOp::Eq, Value::Null)]
    );
}

#[test]
fn only_plain_comparisons_become_constraints() {
    assert!(
        constraints("a != 1 && b in [1, 2] && c ~ 'x' && !(d = 1) && (e = 1 || f = 2) && !g")
            .is_empty()
    );
    assert!(constraints("a = b && 1 = 1 && @user.id = 'u1'").is_empty());
    assert!(constraints("tags = ['a'] && x = @user.roles && u = @user").is_empty());
    assert_eq!(
        constraints("ok && temp > 3 && true"),
        vec![
            constraint("ok", CmpOp::Eq, json!(true)),
            constraint("temp", CmpOp::Gt, json!(3)),
        ]
    );
    assert_eq!(
        constraints("a = 1"),
        vec![constraint("a", CmpOp::Eq, json!(1))]
    );
    assert_eq!(
        constraints("a = null && b = false"),
        vec![
            constraint("a", CmpOp::Eq, Value::Null),
            constraint("b", CmpOp::Eq, json!(false)),
        ]
    );
}

#[test]
fn constraint_satisfaction_follows_expression_semantics() {
    let eq_null = constraint("a", CmpOp::Eq, Value::Null);
    assert!(eq_null.is_satisfied_by(&Value::Null));
    assert!(!eq_null.is_satisfied_by(&json!(0)));
    let eq_one = constraint("a", CmpOp::Eq, json!(1));
    assert!(eq_one.is_satisfied_by(&json!(1.0)));
    assert!(!eq_one.is_satisfied_by(&json!("1")));
    let lt_null = constraint("a", CmpOp::Lt, Value::Null);
    assert!(!lt_null.is_satisfied_by(&Value::Null));
    assert!(!lt_null.is_satisfied_by(&json!(-5)));
    let gt_three = constraint("a", CmpOp::Gt, json!(3));
    assert!(gt_three.is_satisfied_by(&json!(3.5)));
    assert!(!gt_three.is_satisfied_by(&json!("4")));
    assert_eq!(gt_three.to_string(), "a > 3");
    assert_eq!(CmpOp::Le.flipped(), CmpOp::Ge);
    assert_eq!(CmpOp::Eq.flipped(), CmpOp::Eq);
}

#[test]
fn pinned_text_is_a_top_level_equality_with_a_text_literal() {
    let pinned = |src: &str| expr(src).pinned_text("device").map(str::to_owned);
    assert_eq!(pinned("device = 'gw-1'"), Some("gw-1".into()));
    assert_eq!(pinned("'gw-1' = device"), Some("gw-1".into()));
    assert_eq!(pinned("temp > 3 && (ok && device = 'a')"), Some("a".into()));
    // Anything that lets another source through, or that is not a fixed
    // text, pins nothing.
    for src in [
        "device = 'a' || device = 'b'",
        "!(device = 'a')",
        "device != 'a'",
        "device in ['a']",
        "device = @user.id",
        "device = @now",
        "device = 1",
        "devices = 'a'",
        "device.name = 'a'",
        "true",
    ] {
        assert_eq!(pinned(src), None, "{src}");
    }
}
