//! Syntax tree produced by the parser and walked by the evaluator and planner.

use serde_json::Value;

#[derive(Debug, Clone)]
pub(super) enum Node {
    /// Flattened: `a || (b || c)` is stored as one `Or` of three items.
    Or(Vec<Node>),
    /// Flattened like `Or`, which is what lets the planner see every conjunct.
    And(Vec<Node>),
    Not(Box<Node>),
    Cmp {
        op: Op,
        lhs: Operand,
        rhs: Operand,
    },
    /// A bare operand used as a condition; it must evaluate to a boolean.
    Value(Operand),
}

impl Node {
    pub(super) fn cost(&self) -> usize {
        match self {
            Node::Or(items) | Node::And(items) => 1 + items.iter().map(Node::cost).sum::<usize>(),
            Node::Not(inner) => 1 + inner.cost(),
            Node::Cmp { lhs, rhs, .. } => 1 + lhs.cost() + rhs.cost(),
            Node::Value(operand) => 1 + operand.cost(),
        }
    }
}

impl Operand {
    fn cost(&self) -> usize {
        match self {
            Operand::Lit(Value::Array(items)) => 1 + items.len(),
            Operand::List(items) => 1 + items.iter().map(Operand::cost).sum::<usize>(),
            Operand::Field(_) | Operand::User(_) | Operand::Now | Operand::Lit(_) => 1,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    In,
    Contains,
}

#[derive(Debug, Clone)]
pub(super) enum Operand {
    Field(Path),
    /// `@user` itself when `None`, otherwise one of its attributes.
    User(Option<UserAttr>),
    Now,
    /// Literals, including list literals whose elements are all constant: those
    /// are folded into a JSON array at parse time so evaluation never builds one.
    Lit(Value),
    /// A list literal with at least one `@user`/`@now` element, resolved lazily.
    List(Vec<Operand>),
}

#[derive(Debug, Clone)]
pub(super) struct Path {
    pub(super) full: String,
    /// Pre-split so evaluation walks the record without splitting or allocating.
    pub(super) segments: Box<[String]>,
}

impl Path {
    pub(super) fn new(segments: Vec<String>) -> Self {
        Path {
            full: segments.join("."),
            segments: segments.into_boxed_slice(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum UserAttr {
    Id,
    Email,
    Roles,
    Groups,
    Tenant,
}

impl UserAttr {
    pub(super) fn name(self) -> &'static str {
        match self {
            UserAttr::Id => "id",
            UserAttr::Email => "email",
            UserAttr::Roles => "roles",
            UserAttr::Groups => "groups",
            UserAttr::Tenant => "tenant",
        }
    }

    pub(super) fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "id" => UserAttr::Id,
            "email" => UserAttr::Email,
            "roles" => UserAttr::Roles,
            "groups" => UserAttr::Groups,
            "tenant" => UserAttr::Tenant,
            _ => return None,
        })
    }
}
