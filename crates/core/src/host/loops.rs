//! Loops that cannot end: `loop { ... }` or `while true { ... }` with no `break`, `return` or
//! `throw` of their own. Such a loop stops only at the sandbox's operation limit or the run's
//! timeout, after whatever it calls has been sent: a mistake to report before the run.

use std::collections::HashSet;

use rhai::{ASTFlags, ASTNode, Expr, Position, Stmt};

use super::check::Diagnostic;

/// Every loop in the script (functions included) that nothing inside can leave.
pub(crate) fn endless_loops(ast: &rhai::AST) -> Vec<Diagnostic> {
    let mut candidates: Vec<(usize, Position)> = Vec::new();
    let mut left: HashSet<usize> = HashSet::new();
    ast.walk(&mut |path: &[ASTNode]| {
        match path.last() {
            Some(ASTNode::Stmt(stmt @ Stmt::While(flow, pos)))
                if matches!(flow.expr, Expr::Unit(_) | Expr::BoolConstant(true, _)) =>
            {
                candidates.push((address(stmt), *pos));
            }
            // `break` leaves the innermost loop around it.
            Some(ASTNode::Stmt(Stmt::BreakLoop(_, flags, _))) if flags.intersects(ASTFlags::BREAK) => {
                if let Some(inner) = path.iter().rev().skip(1).find_map(loop_address) {
                    left.insert(inner);
                }
            }
            // `return` and `throw` leave every loop around them.
            Some(ASTNode::Stmt(Stmt::Return(..))) => left.extend(path.iter().filter_map(loop_address)),
            _ => {}
        }
        true
    });
    candidates
        .into_iter()
        .filter(|(addr, _)| !left.contains(addr))
        .map(|(_, pos)| {
            Diagnostic::at(
                pos,
                "this loop never ends: nothing inside it can leave it (add a `break`, `return` or `throw`, or loop over a list with `for`)".to_owned(),
            )
        })
        .collect()
}

fn loop_address(node: &ASTNode) -> Option<usize> {
    match node {
        ASTNode::Stmt(stmt @ (Stmt::While(..) | Stmt::Do(..) | Stmt::For(..))) => Some(address(stmt)),
        _ => None,
    }
}

/// A statement's identity while the tree is walked.
fn address(stmt: &Stmt) -> usize {
    std::ptr::from_ref(stmt) as usize
}
