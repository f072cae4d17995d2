//! Rule expressions: the small language used for access rules, list filters and
//! subscription filters.
//!
//! # Syntax
//!
//! ```text
//! expr       := or
//! or         := and ( '||' and )*
//! and        := unary ( '&&' unary )*
//! unary      := '!' unary | comparison
//! comparison := primary ( cmp-op primary )?        -- not associative
//! cmp-op     := '=' | '==' | '!=' | '<' | '<=' | '>' | '>=' | 'in' | '~'
//! primary    := '(' expr ')' | operand
//! operand    := field | '@user' | '@user.' attr | '@now' | literal | list
//! field      := ident ( '.' ident )*              -- ident: [A-Za-z_][A-Za-z0-9_]*
//! attr       := 'id' | 'email' | 'roles' | 'groups' | 'tenant'
//! literal    := string | number | 'true' | 'false' | 'null'
//! list       := '[' ( element ( ',' element )* )? ']'
//! element    := literal | list | '@user' | '@user.' attr | '@now'
//! ```
//!
//! Strings use `'` or `"` with the escapes `\\ \' \" \n \t`. Numbers are
//! optionally negative integers or decimals with an optional exponent. The
//! keywords `true false null in` cannot be used as (the first segment of) a
//! field name. `!a = b` means `!(a = b)`; `a = b = c` is rejected. Both sides
//! of a comparison must be values: `(a = 1) = true` is rejected.
//!
//! # Semantics
//!
//! * Values are JSON. A missing field is `null`; walking a path into a
//!   non-object (`meta.site` where `meta` is a string) is `null` too.
//! * `@user` is `null` for an anonymous caller, and so is every `@user.x`.
//!   `@user.email` and `@user.tenant` are `null` when unset; `@user.roles` and
//!   `@user.groups` are lists of strings. A signed-in `@user` is an opaque
//!   non-null value that equals only an identical user.
//! * `@now` is the string the caller passes: RFC 3339 UTC with milliseconds.
//!   Datetime fields use the same canonical format, so comparing strings
//!   orders them chronologically.
//! * `=` / `!=`: JSON equality, except that numbers compare numerically (`1 = 1.0`)
//!   including inside lists and objects. Values of different types are unequal,
//!   never an error. `x = null` holds when `x` is missing or null.
//! * `<` `<=` `>` `>=`: number with number numerically, string with string by
//!   bytes. Any other pairing, including anything with `null`, is false.
//!   "Numerically" means as IEEE doubles, the JSON/JavaScript number model:
//!   integers beyond 2^53 compare by their nearest double.
//! * `a in b`: true when `b` is a list with an element equal (as `=`) to `a`;
//!   false when `b` is not a list.
//! * `a ~ b`: if both are strings, true when `a` contains `b`; if `a` is a list,
//!   true when an element equals `b`; otherwise false.
//! * `&&` and `||` short-circuit left to right. Every operand they actually
//!   evaluate, and the operand of `!`, must be a boolean, as must a bare operand
//!   used as the whole expression; otherwise evaluation fails with
//!   [`EvalError`]. So `false && 5` is false, but `5 && false` is an error.
//! * Evaluation never panics; callers treat an [`EvalError`] as a denial
//!   ([`Expr::matches`] does exactly that).
//!
//! # Limits
//!
//! Sources longer than [`MAX_SOURCE_LEN`] bytes, nesting deeper than
//! [`MAX_DEPTH`] (each `(`, `!` and `[` opens a level; `&&`/`||` chains and
//! comparisons do not nest, since they are flat or non-associative) and list
//! literals with more than [`MAX_LIST_LEN`] elements are parse errors.

mod ast;
mod eval;
mod lexer;
mod parser;
mod plan;
#[cfg(test)]
mod tests;

use std::fmt;
use std::str::FromStr;

use serde_json::{Map, Value};

/// Longest accepted source, in bytes.
pub const MAX_SOURCE_LEN: usize = 4096;
/// Deepest accepted nesting of parentheses, `!` and list literals.
pub const MAX_DEPTH: usize = 32;
/// Most elements accepted in one list literal.
pub const MAX_LIST_LEN: usize = 256;

/// A parsed rule expression. Cheap to share: parse once, evaluate per record.
#[derive(Debug, Clone)]
pub struct Expr {
    source: String,
    root: ast::Node,
}

/// The caller an expression is evaluated for (`@user`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserContext {
    pub id: String,
    pub email: Option<String>,
    pub roles: Vec<String>,
    pub groups: Vec<String>,
    pub tenant: Option<String>,
}

/// Everything one evaluation looks at.
#[derive(Debug, Clone, Copy)]
pub struct EvalContext<'a> {
    pub record: &'a Map<String, Value>,
    /// `None` for an anonymous caller.
    pub user: Option<&'a UserContext>,
    /// The current time, RFC 3339 UTC with milliseconds ("2026-11-22T06:12:34.123Z").
    pub now: &'a str,
}

impl<'a> EvalContext<'a> {
    pub fn new(
        record: &'a Map<String, Value>,
        user: Option<&'a UserContext>,
        now: &'a str,
    ) -> Self {
        EvalContext { record, user, now }
    }
}

/// A syntax error or exceeded limit, located by a 0-based char offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub position: usize,
    pub message: String,
}

impl ParseError {
    fn new(position: usize, message: impl Into<String>) -> Self {
        ParseError {
            position,
            message: message.into(),
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at position {}: {}", self.position, self.message)
    }
}

impl std::error::Error for ParseError {}

/// A runtime failure, such as a non-boolean used as a condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvalError {
    pub message: String,
}

impl fmt::Display for EvalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for EvalError {}

/// Comparison operators an index planner can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CmpOp {
    Eq,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CmpOp {
    pub fn symbol(self) -> &'static str {
        match self {
            CmpOp::Eq => "=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
        }
    }

    /// The operator with its operands swapped: `3 < x` is `x > 3`.
    pub fn flipped(self) -> Self {
        match self {
            CmpOp::Eq => CmpOp::Eq,
            CmpOp::Lt => CmpOp::Gt,
            CmpOp::Le => CmpOp::Ge,
            CmpOp::Gt => CmpOp::Lt,
            CmpOp::Ge => CmpOp::Le,
        }
    }
}

/// `field op value`, which every record matching the expression satisfies.
///
/// A record satisfies it exactly when evaluating `field op value` on the record
/// is true, so a planner must use the expression semantics (see
/// [`Constraint::is_satisfied_by`]): a missing field is null, so `Eq` with
/// `null` means "missing or null"; numbers compare numerically (`Eq 1` also
/// selects `1.0`); an ordering holds only between two numbers or two strings,
/// so `Lt null` or a number bound against a string field selects nothing.
#[derive(Debug, Clone, PartialEq)]
pub struct Constraint {
    /// Dotted path, as in [`Expr::fields`].
    pub field: String,
    pub op: CmpOp,
    /// Always a scalar: null, boolean, number or string.
    pub value: Value,
}

impl Constraint {
    /// Whether a record whose field holds `value` (`Value::Null` when the field
    /// is missing) satisfies this constraint.
    pub fn is_satisfied_by(&self, value: &Value) -> bool {
        plan::satisfies(self, value)
    }
}

impl fmt::Display for Constraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.field, self.op.symbol(), self.value)
    }
}

impl Expr {
    pub fn parse(src: &str) -> Result<Expr, ParseError> {
        Ok(Expr {
            source: src.to_owned(),
            root: parser::parse(src)?,
        })
    }

    /// The text the expression was parsed from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// About how many steps one evaluation takes: one per node and operand,
    /// plus one per element of a list it compares against. Subscriptions
    /// pay this for every event, so a connection's filters share a budget.
    pub fn cost(&self) -> usize {
        self.root.cost()
    }

    pub fn evaluate(&self, ctx: &EvalContext) -> Result<bool, EvalError> {
        eval::evaluate(&self.root, ctx)
    }

    /// [`Expr::evaluate`], with an evaluation error counting as no match.
    pub fn matches(&self, ctx: &EvalContext) -> bool {
        self.evaluate(ctx).unwrap_or(false)
    }

    /// Record field paths referenced anywhere, dotted, deduplicated, in order
    /// of first appearance (e.g. `["owner", "meta.site"]`).
    pub fn fields(&self) -> Vec<String> {
        plan::fields(&self.root)
    }

    /// Three-valued partial evaluation with the user known and every record
    /// field unknown: false only when no record can make the expression true
    /// (e.g. `@user != null` for an anonymous caller, or `'admin' in
    /// @user.roles` for a user without that role).
    ///
    /// Sound but not complete: each field occurrence is treated as independent,
    /// so a contradiction between fields such as `a = 1 && a = 2` still yields
    /// true. Parts that would fail to evaluate count as not true, because a
    /// failed evaluation denies.
    pub fn can_be_true_for(&self, user: Option<&UserContext>, now: &str) -> bool {
        let empty = Map::new();
        let ctx = EvalContext::new(&empty, user, now);
        eval::outcomes(&self.root, &ctx).may_be_true
    }

    /// The text `field` must equal for this expression to be true, when a
    /// top-level `&&` conjunct is `field = "literal"` (either way round):
    /// a record whose `field` is anything else cannot match. Nothing under
    /// `||` or `!`, and nothing that depends on `@user` or `@now`.
    pub fn pinned_text(&self, field: &str) -> Option<&str> {
        plan::pinned_text(&self.root, field)
    }

    /// For an index planner: comparisons every matching record satisfies.
    ///
    /// These are the top-level `&&` conjuncts (parenthesised `&&` groups are
    /// flattened) of the form `field op value` or `value op field` (returned
    /// flipped) with `op` one of `= < <= > >=` and `value` a scalar literal,
    /// `@user.x` or `@now`, resolved against `user` and `now`. A bare field
    /// conjunct (`ok && ...`) is returned as `ok = true`, since only a boolean
    /// `true` lets it pass. Nothing under `||` or `!` is returned.
    ///
    /// A `@user.x` that resolves to null (anonymous caller, unset email) is kept
    /// as a null constraint: it is still a sound restriction under the
    /// semantics documented on [`Constraint`] (`owner = null` really does hold
    /// for every record an anonymous `owner = @user.id` matches).
    pub fn index_constraints(&self, user: Option<&UserContext>, now: &str) -> Vec<Constraint> {
        let empty = Map::new();
        plan::constraints(&self.root, &EvalContext::new(&empty, user, now))
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl FromStr for Expr {
    type Err = ParseError;

    fn from_str(src: &str) -> Result<Self, Self::Err> {
        Expr::parse(src)
    }
}
