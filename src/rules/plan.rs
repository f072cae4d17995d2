//! Static analysis for callers: referenced fields and index constraints.

use serde_json::{Map, Value};

use super::ast::{Node, Op, Operand};
use super::eval::{compare, resolve, Val};
use super::{CmpOp, Constraint, EvalContext};

fn operands(node: &Node, visit: &mut impl FnMut(&Operand)) {
    match node {
        Node::Or(items) | Node::And(items) => items.iter().for_each(|n| operands(n, visit)),
        Node::Not(inner) => operands(inner, visit),
        Node::Cmp { lhs, rhs, .. } => {
            visit(lhs);
            visit(rhs);
        }
        Node::Value(operand) => visit(operand),
    }
}

pub(super) fn fields(node: &Node) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    operands(node, &mut |operand| {
        if let Operand::Field(path) = operand {
            if !out.contains(&path.full) {
                out.push(path.full.clone());
            }
        }
    });
    out
}

fn cmp_op(op: Op) -> Option<CmpOp> {
    Some(match op {
        Op::Eq => CmpOp::Eq,
        Op::Lt => CmpOp::Lt,
        Op::Le => CmpOp::Le,
        Op::Gt => CmpOp::Gt,
        Op::Ge => CmpOp::Ge,
        Op::Ne | Op::In | Op::Contains => return None,
    })
}

/// The constraint value for the non-field side of a comparison. Only scalars
/// qualify: a list or `@user` itself is not something an index is keyed by,
/// and leaving a conjunct out only makes the planner's candidate set larger.
fn scalar(operand: &Operand, ctx: &EvalContext<'_>) -> Option<Value> {
    if matches!(operand, Operand::Field(_)) {
        return None;
    }
    Some(match resolve(operand, ctx) {
        Val::Null => Value::Null,
        Val::Bool(b) => Value::Bool(b),
        Val::Num(n) => Value::Number(n.clone()),
        Val::Str(s) => Value::String(s.to_owned()),
        Val::Seq(_) | Val::Object(_) | Val::User(_) => return None,
    })
}

fn conjunct(node: &Node, ctx: &EvalContext<'_>, out: &mut Vec<Constraint>) {
    match node {
        Node::And(items) => items.iter().for_each(|n| conjunct(n, ctx, out)),
        Node::Cmp { op, lhs, rhs } => {
            let Some(op) = cmp_op(*op) else { return };
            let found = match (lhs, rhs) {
                (Operand::Field(path), value) => scalar(value, ctx).map(|v| (path, op, v)),
                (value, Operand::Field(path)) => {
                    scalar(value, ctx).map(|v| (path, op.flipped(), v))
                }
                _ => None,
            };
            if let Some((path, op, value)) = found {
                out.push(Constraint {
                    field: path.full.clone(),
                    op,
                    value,
                });
            }
        }
        // A bare field conjunct only passes when the field is exactly `true`.
        Node::Value(Operand::Field(path)) => out.push(Constraint {
            field: path.full.clone(),
            op: CmpOp::Eq,
            value: Value::Bool(true),
        }),
        Node::Or(_) | Node::Not(_) | Node::Value(_) => {}
    }
}

pub(super) fn constraints(node: &Node, ctx: &EvalContext<'_>) -> Vec<Constraint> {
    let mut out = Vec::new();
    conjunct(node, ctx, &mut out);
    out
}

pub(super) fn satisfies(constraint: &Constraint, value: &Value) -> bool {
    let op = match constraint.op {
        CmpOp::Eq => Op::Eq,
        CmpOp::Lt => Op::Lt,
        CmpOp::Le => Op::Le,
        CmpOp::Gt => Op::Gt,
        CmpOp::Ge => Op::Ge,
    };
    // Neither side is a list literal with references, so the context is unused.
    let empty = Map::new();
    let ctx = EvalContext {
        record: &empty,
        user: None,
        now: "",
    };
    compare(op, Val::of(value), Val::of(&constraint.value), &ctx)
}

pub(super) fn pinned_text<'n>(node: &'n Node, field: &str) -> Option<&'n str> {
    match node {
        Node::And(items) => items.iter().find_map(|n| pinned_text(n, field)),
        Node::Cmp {
            op: Op::Eq,
            lhs,
            rhs,
        } => match (lhs, rhs) {
            (Operand::Field(path), Operand::Lit(Value::String(text)))
            | (Operand::Lit(Value::String(text)), Operand::Field(path))
                if path.full == field =>
            {
                Some(text)
            }
            _ => None,
        },
        _ => None,
    }
}
