//! Evaluation over borrowed values.
//!
//! Operands resolve to [`Val`], a view that borrows from the record, the user
//! or the expression itself, so evaluating a rule against a record allocates
//! nothing on the success path. `@user.roles` is compared as a list of strings
//! in place instead of being converted into a JSON array.

use std::cmp::Ordering;

use serde_json::{Map, Number, Value};

use super::ast::{Node, Op, Operand, UserAttr};
use super::{EvalContext, EvalError, UserContext};

/// Comparing two deeply nested record values recurses; past this depth they
/// are treated as unequal rather than risking the stack.
const MAX_VALUE_DEPTH: usize = 128;

#[derive(Debug, Clone, Copy)]
pub(super) enum Val<'a> {
    Null,
    Bool(bool),
    Num(&'a Number),
    Str(&'a str),
    Seq(Seq<'a>),
    Object(&'a Map<String, Value>),
    /// `@user` for a signed-in caller: equal only to an identical user.
    User(&'a UserContext),
}

#[derive(Debug, Clone, Copy)]
pub(super) enum Seq<'a> {
    Json(&'a [Value]),
    Strings(&'a [String]),
    Operands(&'a [Operand]),
}

impl<'a> Val<'a> {
    pub(super) fn of(value: &'a Value) -> Self {
        match value {
            Value::Null => Val::Null,
            Value::Bool(b) => Val::Bool(*b),
            Value::Number(n) => Val::Num(n),
            Value::String(s) => Val::Str(s),
            Value::Array(items) => Val::Seq(Seq::Json(items)),
            Value::Object(map) => Val::Object(map),
        }
    }

    fn type_name(self) -> &'static str {
        match self {
            Val::Null => "null",
            Val::Bool(_) => "a boolean",
            Val::Num(_) => "a number",
            Val::Str(_) => "a string",
            Val::Seq(_) => "a list",
            Val::Object(_) => "an object",
            Val::User(_) => "a user",
        }
    }
}

impl<'a> Seq<'a> {
    fn len(self) -> usize {
        match self {
            Seq::Json(items) => items.len(),
            Seq::Strings(items) => items.len(),
            Seq::Operands(items) => items.len(),
        }
    }

    fn get(self, i: usize, ctx: &EvalContext<'a>) -> Option<Val<'a>> {
        match self {
            Seq::Json(items) => items.get(i).map(Val::of),
            Seq::Strings(items) => items.get(i).map(|s| Val::Str(s)),
            Seq::Operands(items) => items.get(i).map(|op| resolve(op, ctx)),
        }
    }

    fn any(self, ctx: &EvalContext<'a>, mut pred: impl FnMut(Val<'a>) -> bool) -> bool {
        match self {
            Seq::Json(items) => items.iter().any(|v| pred(Val::of(v))),
            Seq::Strings(items) => items.iter().any(|s| pred(Val::Str(s))),
            Seq::Operands(items) => items.iter().any(|op| pred(resolve(op, ctx))),
        }
    }
}

fn lookup<'a>(record: &'a Map<String, Value>, segments: &[String]) -> Option<&'a Value> {
    let (first, rest) = segments.split_first()?;
    let mut current = record.get(first)?;
    for segment in rest {
        current = current.as_object()?.get(segment)?;
    }
    Some(current)
}

pub(super) fn resolve<'a>(operand: &'a Operand, ctx: &EvalContext<'a>) -> Val<'a> {
    match operand {
        Operand::Field(path) => lookup(ctx.record, &path.segments).map_or(Val::Null, Val::of),
        Operand::User(attr) => match (ctx.user, attr) {
            (None, _) => Val::Null,
            (Some(user), None) => Val::User(user),
            (Some(user), Some(attr)) => match attr {
                UserAttr::Id => Val::Str(&user.id),
                UserAttr::Email => user.email.as_deref().map_or(Val::Null, Val::Str),
                UserAttr::Roles => Val::Seq(Seq::Strings(&user.roles)),
                UserAttr::Groups => Val::Seq(Seq::Strings(&user.groups)),
                UserAttr::Tenant => user.tenant.as_deref().map_or(Val::Null, Val::Str),
            },
        },
        Operand::Now => Val::Str(ctx.now),
        Operand::Lit(value) => Val::of(value),
        Operand::List(items) => Val::Seq(Seq::Operands(items)),
    }
}

/// Numbers compare as IEEE doubles, the JSON/JavaScript number model, so
/// `1 = 1.0`. Integers beyond 2^53 therefore compare by their nearest double;
/// an index that orders numbers by their `f64` value agrees with this exactly.
pub(super) fn cmp_numbers(a: &Number, b: &Number) -> Option<Ordering> {
    a.as_f64()?.partial_cmp(&b.as_f64()?)
}

fn equal<'a>(a: Val<'a>, b: Val<'a>, ctx: &EvalContext<'a>, depth: usize) -> bool {
    match (a, b) {
        (Val::Null, Val::Null) => true,
        (Val::Bool(x), Val::Bool(y)) => x == y,
        (Val::Num(x), Val::Num(y)) => cmp_numbers(x, y) == Some(Ordering::Equal),
        (Val::Str(x), Val::Str(y)) => x == y,
        (Val::Seq(x), Val::Seq(y)) => {
            depth < MAX_VALUE_DEPTH
                && x.len() == y.len()
                && (0..x.len()).all(|i| match (x.get(i, ctx), y.get(i, ctx)) {
                    (Some(p), Some(q)) => equal(p, q, ctx, depth + 1),
                    _ => false,
                })
        }
        (Val::Object(x), Val::Object(y)) => {
            depth < MAX_VALUE_DEPTH
                && x.len() == y.len()
                && x.iter().all(|(key, v)| {
                    y.get(key)
                        .is_some_and(|w| equal(Val::of(v), Val::of(w), ctx, depth + 1))
                })
        }
        (Val::User(x), Val::User(y)) => x == y,
        _ => false,
    }
}

fn order(a: Val<'_>, b: Val<'_>) -> Option<Ordering> {
    match (a, b) {
        (Val::Num(x), Val::Num(y)) => cmp_numbers(x, y),
        // `str` orders by bytes, which for RFC 3339 UTC timestamps in one
        // canonical format is chronological order.
        (Val::Str(x), Val::Str(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

pub(super) fn compare<'a>(op: Op, a: Val<'a>, b: Val<'a>, ctx: &EvalContext<'a>) -> bool {
    match op {
        Op::Eq => equal(a, b, ctx, 0),
        Op::Ne => !equal(a, b, ctx, 0),
        Op::Lt => order(a, b) == Some(Ordering::Less),
        Op::Le => matches!(order(a, b), Some(Ordering::Less | Ordering::Equal)),
        Op::Gt => order(a, b) == Some(Ordering::Greater),
        Op::Ge => matches!(order(a, b), Some(Ordering::Greater | Ordering::Equal)),
        Op::In => match b {
            Val::Seq(items) => items.any(ctx, |item| equal(a, item, ctx, 0)),
            _ => false,
        },
        Op::Contains => match (a, b) {
            (Val::Str(haystack), Val::Str(needle)) => haystack.contains(needle),
            (Val::Seq(items), _) => items.any(ctx, |item| equal(item, b, ctx, 0)),
            _ => false,
        },
    }
}

fn describe_operand(operand: &Operand) -> String {
    match operand {
        Operand::Field(path) => format!("field '{}'", path.full),
        Operand::User(None) => "@user".to_owned(),
        Operand::User(Some(attr)) => format!("@user.{}", attr.name()),
        Operand::Now => "@now".to_owned(),
        Operand::Lit(value) => format!("the value {value}"),
        Operand::List(_) => "the list".to_owned(),
    }
}

fn as_condition<'a>(operand: &'a Operand, ctx: &EvalContext<'a>) -> Result<bool, EvalError> {
    match resolve(operand, ctx) {
        Val::Bool(b) => Ok(b),
        other => Err(EvalError {
            message: format!(
                "{} is {}, but a condition must be a boolean",
                describe_operand(operand),
                other.type_name()
            ),
        }),
    }
}

pub(super) fn evaluate<'a>(node: &'a Node, ctx: &EvalContext<'a>) -> Result<bool, EvalError> {
    match node {
        Node::Or(items) => {
            for item in items {
                if evaluate(item, ctx)? {
                    return Ok(true);
                }
            }
            Ok(false)
        }
        Node::And(items) => {
            for item in items {
                if !evaluate(item, ctx)? {
                    return Ok(false);
                }
            }
            Ok(true)
        }
        Node::Not(inner) => Ok(!evaluate(inner, ctx)?),
        Node::Cmp { op, lhs, rhs } => Ok(compare(*op, resolve(lhs, ctx), resolve(rhs, ctx), ctx)),
        Node::Value(operand) => as_condition(operand, ctx),
    }
}

/// The results a node can evaluate to for some record, when record fields are
/// unknown. A failing evaluation contributes neither: it ends the whole
/// evaluation with an error, which denies, so `5 || true` can never be true.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Outcomes {
    pub(super) may_be_true: bool,
    pub(super) may_be_false: bool,
}

const EITHER: Outcomes = Outcomes {
    may_be_true: true,
    may_be_false: true,
};

pub(super) fn outcomes<'a>(node: &'a Node, ctx: &EvalContext<'a>) -> Outcomes {
    match node {
        Node::Or(items) => {
            let mut may_be_true = false;
            for item in items {
                let here = outcomes(item, ctx);
                may_be_true |= here.may_be_true;
                if !here.may_be_false {
                    return Outcomes {
                        may_be_true,
                        may_be_false: false,
                    };
                }
            }
            Outcomes {
                may_be_true,
                may_be_false: true,
            }
        }
        Node::And(items) => {
            let mut may_be_false = false;
            for item in items {
                let here = outcomes(item, ctx);
                may_be_false |= here.may_be_false;
                if !here.may_be_true {
                    return Outcomes {
                        may_be_true: false,
                        may_be_false,
                    };
                }
            }
            Outcomes {
                may_be_true: true,
                may_be_false,
            }
        }
        Node::Not(inner) => {
            let here = outcomes(inner, ctx);
            Outcomes {
                may_be_true: here.may_be_false,
                may_be_false: here.may_be_true,
            }
        }
        Node::Cmp { lhs, rhs, .. }
            if matches!(lhs, Operand::Field(_)) || matches!(rhs, Operand::Field(_)) =>
        {
            EITHER
        }
        Node::Value(Operand::Field(_)) => EITHER,
        // No field involved: the record cannot change the answer, so compute it.
        Node::Cmp { .. } | Node::Value(_) => {
            let result = evaluate(node, ctx);
            Outcomes {
                may_be_true: result == Ok(true),
                may_be_false: result == Ok(false),
            }
        }
    }
}
