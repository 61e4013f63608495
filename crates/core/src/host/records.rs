//! Strict records: reading a field an action's record does not have is an error, at run time and
//! in `runbook check`.
//!
//! At run time, every record an action returns holds every field of its spec (see
//! `convert::result_to_dynamic`), so a map that holds every field of a known record is that
//! record. Rhai asks [`KnownRecords::missing`] only when a map lacks a property: for a record that
//! is an error naming the closest field; any other map reads `()` as before. Reads of present
//! fields cost nothing more.
//!
//! `runbook check` follows the data flow it can see in each body (the script, each function,
//! each closure): a variable bound once to an action's result (or to an item of a `for` loop
//! over one), a closure's parameter when the closure is handed a list action's items (`filter`,
//! `map`, ..., `parallel`), a variable a closure captures, and direct access on a call. A
//! variable bound more than once in a body, or assigned to, is not followed.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use rhai::{ASTNode, Dynamic, EvalAltResult, Expr, FnPtr, Map, Module, Position, Shared, Stmt};

use super::check::Diagnostic;
use crate::action::{Record, Records};
use crate::registry::{Registry, closest};

/// Every record the engine's actions declare, and the map functions that hide the keys a read
/// had to add (see [`KnownRecords::install`]).
pub(crate) struct KnownRecords(Vec<&'static Record>, Shared<Module>);

/// The tag of the `()` a read of a missing key leaves in a map: a placeholder only a later write
/// replaces. Nothing a script can see shows it.
const READ_SLOT: i32 = 0x0005_EED0;

/// The tag of the `()` a record holds for a declared field the service left out: it reads `()`
/// and makes the map recognisable as its record, but is not a value — `keys`, `in`, and the JSON
/// a record becomes when it is sent back to a service or kept as a result leave it out.
const ABSENT_FIELD: i32 = 0x0005_EED1;

/// A declared field the service left out, as a record holds it.
pub(crate) fn absent_field() -> Dynamic {
    let mut value = Dynamic::UNIT;
    value.set_tag(ABSENT_FIELD);
    value
}

/// Whether a map entry stands for nothing the script or the service gave: a read's slot or a
/// record's absent field.
pub(crate) fn is_placeholder(value: &Dynamic) -> bool {
    value.is_unit() && matches!(value.tag(), READ_SLOT | ABSENT_FIELD)
}

fn is_read_slot(value: &Dynamic) -> bool {
    value.is_unit() && value.tag() == READ_SLOT
}

fn shown(map: &Map) -> impl Iterator<Item = (&rhai::Identifier, &Dynamic)> {
    map.iter().filter(|(_, v)| !is_placeholder(v))
}

/// `keys`, `values`, `len`, `is_empty`, `in` and printing on maps, leaving placeholders out:
/// registered after the standard package, they take its place.
fn map_views() -> Module {
    let mut module = Module::new();
    module.set_native_fn("keys", |map: &mut Map| {
        Ok(shown(map)
            .map(|(k, _)| Dynamic::from(rhai::ImmutableString::from(k.as_str())))
            .collect::<rhai::Array>())
    });
    module.set_native_fn("values", |map: &mut Map| {
        Ok(shown(map).map(|(_, v)| v.clone()).collect::<rhai::Array>())
    });
    module.set_native_fn("len", |map: &mut Map| {
        Ok(rhai::INT::try_from(shown(map).count()).unwrap_or(rhai::INT::MAX))
    });
    module.set_native_fn("is_empty", |map: &mut Map| Ok(shown(map).next().is_none()));
    for name in ["to_string", "to_debug"] {
        module.set_native_fn(name, |map: &mut Map| {
            let visible: Map = shown(map).map(|(k, v)| (k.clone(), v.clone())).collect();
            Ok(format!("{:?}", Dynamic::from_map(visible)))
        });
    }
    module.set_native_fn("contains", |map: &mut Map, key: rhai::ImmutableString| {
        Ok(map.get(key.as_str()).is_some_and(|v| !is_placeholder(v)))
    });
    module.build_index();
    module
}

impl KnownRecords {
    pub fn new(registry: &Registry) -> Arc<Self> {
        let mut known: Vec<&'static Record> = Vec::new();
        let declared = registry
            .providers()
            .iter()
            .flat_map(|p| p.actions().iter())
            .filter_map(|spec| spec.records.map(Records::record));
        for record in declared {
            // A record without fields would match every map.
            if !record.fields.is_empty() && !known.contains(&record) {
                known.push(record);
            }
        }
        Arc::new(KnownRecords(known, Shared::new(map_views())))
    }

    /// Installs the check on an engine that runs `script` (none: an engine that only compiles).
    pub fn install(self: &Arc<Self>, engine: &mut rhai::Engine, script: Option<&rhai::AST>) {
        engine.register_global_module(self.1.clone());
        let known = self.clone();
        let writes = script.map(Writes::of);
        engine.on_map_missing_property(move |map, prop, _| {
            if let Some(record) = known.record_of(map) {
                let message = unknown_field(record, prop, map.keys().map(|k| k.as_str()));
                return Err(EvalAltResult::ErrorRuntime(message.into(), Position::NONE).into());
            }
            // Rhai asks the same for a read and for a write of a new key, and a write must land
            // in the map: a key the script may write is added as a placeholder `()`, which a
            // write replaces and which `keys`, `values`, `len`, `is_empty`, `in` and every
            // conversion out of the script skip; any other key reads `()` and leaves the map as
            // it was.
            if writes.as_ref().is_none_or(|w| w.may_write(prop)) {
                let slot: &mut Dynamic = map.entry(rhai::Identifier::from(prop)).or_insert_with(|| {
                    let mut placeholder = Dynamic::UNIT;
                    placeholder.set_tag(READ_SLOT);
                    placeholder
                });
                Ok(rhai::Target::RefMut(slot))
            } else {
                Ok(rhai::Target::TempValue(Dynamic::UNIT))
            }
        });
    }

    /// The record a map is: the largest whose every field it holds.
    fn record_of(&self, map: &Map) -> Option<&'static Record> {
        self.0
            .iter()
            .copied()
            // A read's slot is not a field: a script's own map does not become a record by
            // being read.
            .filter(|r| r.fields.iter().all(|f| map.get(*f).is_some_and(|v| !is_read_slot(v))))
            .max_by_key(|r| r.fields.len())
    }
}

/// The map keys a script may write: the properties named on the left of its assignments, or any
/// key when it assigns through an index (`seen[email] = true`).
struct Writes {
    names: HashSet<String>,
    any: bool,
}

impl Writes {
    fn of(ast: &rhai::AST) -> Self {
        let mut writes = Writes {
            names: HashSet::new(),
            any: false,
        };
        ast.walk(&mut |path: &[ASTNode]| {
            // Every node of an assignment's target: over-counting only adds `()` keys.
            let target = path.windows(2).any(|pair| match pair {
                [ASTNode::Stmt(Stmt::Assignment(x)), ASTNode::Expr(e)] => std::ptr::eq(*e, &x.1.lhs),
                _ => false,
            });
            match path.last() {
                Some(ASTNode::Expr(Expr::Property(p, _))) if target => {
                    writes.names.insert(p.2.to_string());
                }
                Some(ASTNode::Expr(Expr::Index(..))) if target => writes.any = true,
                _ => {}
            }
            true
        });
        writes
    }

    fn may_write(&self, key: &str) -> bool {
        self.any || self.names.contains(key)
    }
}

/// `a User has no field emial (did you mean email?)`.
pub(crate) fn unknown_field<'a>(record: &Record, field: &str, fields: impl Iterator<Item = &'a str>) -> String {
    let article = if record.name.starts_with(['A', 'E', 'I', 'O']) {
        "an"
    } else {
        "a"
    };
    match closest(field, fields) {
        Some(f) => format!("{article} {} has no field {field} (did you mean {f}?)", record.name),
        None => format!(
            "{article} {} has no field {field}; its fields: {}",
            record.name,
            record.fields.join(", ")
        ),
    }
}

/// Methods of arrays that hand each item to a closure: the method and which of the closure's own
/// parameters are items.
const ITEM_CLOSURES: &[(&str, &[usize])] = &[
    ("filter", &[0]),
    ("map", &[0]),
    ("for_each", &[0]),
    ("find", &[0]),
    ("find_map", &[0]),
    ("any", &[0]),
    ("all", &[0]),
    ("some", &[0]),
    ("none", &[0]),
    ("retain", &[0]),
    ("drain", &[0]),
    ("index_of", &[0]),
    ("reduce", &[1]),
    ("reduce_rev", &[1]),
    ("sort", &[0, 1]),
    ("dedup", &[0, 1]),
];

/// Methods of arrays whose result is an array of the same items.
const KEEPS_ITEMS: &[&str] = &["filter", "retain", "drain", "extract"];

/// Methods of arrays whose result is one of the items, or `()`.
const ONE_ITEM: &[&str] = &["find", "get", "pop", "shift", "remove"];

/// Where a variable's value comes from, as far as one body shows.
#[derive(Clone)]
enum Binding {
    /// `let x = expr`.
    Let(Expr),
    /// `for x in expr`.
    Item(Expr),
    /// A parameter: a closure's item or capture, when known.
    Param(Option<Records>),
    /// Anything else (a loop counter, a caught error).
    Opaque,
}

/// One body: the script's, a function's or a closure's.
struct Body {
    bindings: HashMap<String, Vec<Binding>>,
    assigned: HashSet<String>,
}

impl Body {
    fn scan(source: &Source, params: Vec<(String, Option<Records>)>) -> Self {
        let mut body = Body {
            bindings: HashMap::new(),
            assigned: HashSet::new(),
        };
        for (name, origin) in params {
            body.bind(name, Binding::Param(origin));
        }
        source.walk(|node| match node {
            ASTNode::Stmt(Stmt::Var(x, ..)) => body.bind(x.0.name.to_string(), Binding::Let(x.1.clone())),
            ASTNode::Stmt(Stmt::For(x, ..)) => {
                body.bind(x.0.name.to_string(), Binding::Item(x.2.expr.clone()));
                if let Some(counter) = &x.1 {
                    body.bind(counter.name.to_string(), Binding::Opaque);
                }
            }
            ASTNode::Stmt(Stmt::TryCatch(x, ..)) => {
                if let Expr::Variable(v, ..) = &x.expr {
                    body.bind(v.1.to_string(), Binding::Opaque);
                }
            }
            ASTNode::Stmt(Stmt::Assignment(x)) => {
                if let Expr::Variable(v, ..) = &x.1.lhs {
                    body.assigned.insert(v.1.to_string());
                }
            }
            _ => {}
        });
        body
    }

    fn bind(&mut self, name: String, binding: Binding) {
        self.bindings.entry(name).or_default().push(binding);
    }

    /// The record a variable holds, when the body binds it once and never assigns it.
    fn variable(&self, registry: &Registry, name: &str, depth: usize) -> Option<Records> {
        if depth > 16 || self.assigned.contains(name) {
            return None;
        }
        match self.bindings.get(name).map(Vec::as_slice) {
            Some([Binding::Let(expr)]) => self.origin(registry, expr, depth + 1),
            Some([Binding::Item(expr)]) => match self.origin(registry, expr, depth + 1) {
                Some(Records::List(r)) => Some(Records::One(r)),
                _ => None,
            },
            Some([Binding::Param(origin)]) => *origin,
            _ => None,
        }
    }

    /// The record an expression's value holds, when the body shows it.
    fn origin(&self, registry: &Registry, expr: &Expr, depth: usize) -> Option<Records> {
        match expr {
            Expr::FnCall(call, _) if !call.namespace.is_empty() => {
                if call.namespace.path.len() != 1 {
                    return None;
                }
                registry.get(call.namespace.root())?.action(&call.name)?.records
            }
            Expr::FnCall(call, _) if call.name == "invoke" => match call.args.first() {
                Some(Expr::StringConstant(name, _)) => registry.lookup(name).ok()?.1.records,
                _ => None,
            },
            Expr::Variable(v, ..) => self.variable(registry, &v.1, depth),
            Expr::Dot(x, ..) => {
                let mut origin = self.origin(registry, &x.lhs, depth)?;
                let mut rest = &x.rhs;
                loop {
                    let (link, next) = match rest {
                        Expr::Dot(y, ..) => (&y.lhs, Some(&y.rhs)),
                        other => (other, None),
                    };
                    origin = after(origin, link)?;
                    match next {
                        Some(next) => rest = next,
                        None => return Some(origin),
                    }
                }
            }
            _ => None,
        }
    }
}

/// What a chain holds after one link, when it still holds records.
fn after(origin: Records, link: &Expr) -> Option<Records> {
    match (origin, link) {
        (Records::List(r), Expr::MethodCall(call, _)) if KEEPS_ITEMS.contains(&call.name.as_str()) => {
            Some(Records::List(r))
        }
        (Records::List(r), Expr::MethodCall(call, _)) if ONE_ITEM.contains(&call.name.as_str()) => {
            Some(Records::Optional(r))
        }
        _ => None,
    }
}

/// A body to walk: the script's own statements, or one function's, alone in an AST (Rhai does
/// not hand out a function's statements). Walks never enter closures: each is a function of
/// its own.
enum Source<'a> {
    Script(&'a [Stmt]),
    Function(rhai::AST),
}

impl Source<'_> {
    fn walk(&self, mut on_node: impl FnMut(&ASTNode)) {
        let mut each = |nodes: &[ASTNode]| {
            if let Some(node) = nodes.last() {
                on_node(node);
            }
            true
        };
        match self {
            Source::Script(stmts) => {
                let mut path = Vec::new();
                for stmt in *stmts {
                    stmt.walk(&mut path, &mut each);
                }
            }
            Source::Function(ast) => {
                ast.walk(&mut each);
            }
        }
    }
}

/// A closure expression: its function's name and the variables it captures, in order.
fn closure(expr: &Expr) -> Option<(String, Vec<&Expr>)> {
    match expr {
        Expr::DynamicConstant(value, _) => {
            let ptr = value.read_lock::<FnPtr>()?;
            Some((ptr.fn_name().to_owned(), Vec::new()))
        }
        Expr::Stmt(block) => {
            let call = match block.statements().last()? {
                Stmt::FnCall(call, _) => call,
                Stmt::Expr(e) => match &**e {
                    Expr::FnCall(call, _) => call,
                    _ => return None,
                },
                _ => return None,
            };
            if call.name != "curry" {
                return None;
            }
            let (name, _) = closure(call.args.first()?)?;
            Some((name, call.args.iter().skip(1).collect()))
        }
        _ => None,
    }
}

/// The static check of one script.
struct Checker<'a> {
    registry: &'a Registry,
    found: Vec<Diagnostic>,
    /// Closures met so far, with what is known of each parameter.
    closures: HashMap<String, Vec<Option<Records>>>,
}

impl Checker<'_> {
    fn check_body(&mut self, source: &Source, params: Vec<(String, Option<Records>)>) {
        let body = Body::scan(source, params);
        let registry = self.registry;
        source.walk(|node| {
            let ASTNode::Expr(expr) = node else {
                if let ASTNode::Stmt(Stmt::FnCall(call, _)) = node {
                    self.parallel(&body, &call.name, &call.args);
                }
                return;
            };
            match expr {
                Expr::Dot(x, ..) if !matches!(x.lhs, Expr::Property(..) | Expr::MethodCall(..)) => {
                    let origin = body.origin(registry, &x.lhs, 0);
                    self.chain(&body, origin, &x.rhs);
                }
                Expr::FnCall(call, _) if call.namespace.is_empty() => self.parallel(&body, &call.name, &call.args),
                _ => {
                    if let Some((name, captured)) = closure(expr) {
                        let known = captured.iter().map(|e| body.origin(registry, e, 0)).collect();
                        self.closure_seen(name, known, None);
                    }
                }
            }
        });
    }

    /// Checks a chain of links after a value holding `origin`.
    fn chain(&mut self, body: &Body, origin: Option<Records>, rhs: &Expr) {
        let (link, next) = match rhs {
            Expr::Dot(y, ..) => (&y.lhs, Some(&y.rhs)),
            other => (other, None),
        };
        match (origin, link) {
            (Some(Records::One(r) | Records::Optional(r)), Expr::Property(p, pos)) if !r.has(&p.2) => {
                self.found
                    .push(Diagnostic::at(*pos, unknown_field(r, &p.2, r.fields.iter().copied())));
            }
            (Some(Records::List(r)), Expr::MethodCall(call, _)) => {
                if let Some((_, items)) = ITEM_CLOSURES.iter().find(|(m, _)| *m == call.name.as_str()) {
                    for arg in call.args.iter() {
                        self.items_to(body, arg, r, items);
                    }
                }
            }
            _ => {}
        }
        if let Some(next) = next {
            let origin = origin.and_then(|o| after(o, link));
            self.chain(body, origin, next);
        }
    }

    /// `parallel(list, |item| ...)`.
    fn parallel(&mut self, body: &Body, name: &str, args: &[Expr]) {
        if name == "parallel"
            && let [list, f] = args
            && let Some(Records::List(r)) = body.origin(self.registry, list, 0)
        {
            self.items_to(body, f, r, &[0]);
        }
    }

    /// Notes that a closure's parameters at `items` (after its captures) receive `record`s.
    fn items_to(&mut self, body: &Body, f: &Expr, record: &'static Record, items: &[usize]) {
        if let Some((name, captured)) = closure(f) {
            let known = captured.iter().map(|e| body.origin(self.registry, e, 0)).collect();
            let items = items.iter().map(|i| captured.len() + i).collect::<Vec<_>>();
            self.closure_seen(name, known, Some((record, items)));
        }
    }

    fn closure_seen(
        &mut self,
        name: String,
        captured: Vec<Option<Records>>,
        items: Option<(&'static Record, Vec<usize>)>,
    ) {
        let mut known = captured;
        if let Some((record, items)) = items {
            for i in items {
                if known.len() <= i {
                    known.resize(i + 1, None);
                }
                known[i] = Some(Records::One(record));
            }
        }
        match self.closures.get_mut(&name) {
            None => {
                self.closures.insert(name, known);
            }
            // The same closure text twice is one function: keep only what both uses agree on.
            Some(seen) => {
                seen.resize(seen.len().max(known.len()), None);
                for (i, k) in known.into_iter().enumerate() {
                    if seen[i] != k && seen[i].is_some() && k.is_some() {
                        seen[i] = None;
                    } else if seen[i].is_none() {
                        seen[i] = k;
                    }
                }
            }
        }
    }
}

/// Every read of a field an action's record does not have, where the script's data flow shows it.
pub(crate) fn check_fields(ast: &rhai::AST, registry: &Registry) -> Vec<Diagnostic> {
    let mut checker = Checker {
        registry,
        found: Vec::new(),
        closures: HashMap::new(),
    };
    checker.check_body(&Source::Script(ast.statements()), Vec::new());
    let functions: Vec<_> = ast.iter_fn_def().collect();
    let alone = |name: &str| Source::Function(ast.clone_functions_only_filtered(|_, _, _, n, _| n == name));
    let mut done = HashSet::new();
    for f in functions.iter().filter(|f| !f.name.starts_with("anon$")) {
        let params = f.params.iter().map(|p| (p.to_string(), None)).collect();
        checker.check_body(&alone(&f.name), params);
        done.insert(f.name.to_string());
    }
    // Closures are met in the bodies that hold them; each is checked once, after its holder.
    while let Some(name) = checker.closures.keys().find(|n| !done.contains(*n)).cloned() {
        done.insert(name.clone());
        let known = checker.closures.get(&name).cloned().unwrap_or_default();
        if let Some(f) = functions.iter().find(|f| f.name == name) {
            let params = f
                .params
                .iter()
                .enumerate()
                .map(|(i, p)| (p.to_string(), known.get(i).copied().flatten()))
                .collect();
            checker.check_body(&alone(&f.name), params);
        }
    }
    checker.found.sort_by_key(|d| (d.line, d.column));
    checker.found
}
