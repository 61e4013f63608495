//! `runbook actions`: the action reference, from the providers' own specs.

use std::fmt::Write as _;

use runbook_core::{ActionSpec, Registry, Targets};
use serde_json::{Value, json};

use crate::cli::ActionsArgs;
use crate::commands::build_checker;
use crate::config::Config;
use crate::error::{CliError, exit};

/// Prints the list, one provider, or one action.
pub async fn actions(args: &ActionsArgs, config: &Config) -> Result<u8, CliError> {
    // The reference comes from the specs alone: no provider is built, no secret needed.
    let engine = build_checker(config).await?;
    let registry = engine.registry();
    let text = if args.markdown {
        markdown(registry)
    } else if let Some(name) = &args.name {
        if let Some(provider) = registry.get(name) {
            if args.json {
                json_text(&json!(
                    provider
                        .actions()
                        .iter()
                        .map(|a| spec_json(provider.namespace(), a))
                        .collect::<Vec<_>>()
                ))
            } else {
                provider_text(registry, name)
            }
        } else {
            let (provider, spec) = registry.lookup(name).map_err(CliError::usage)?;
            if args.json {
                json_text(&spec_json(provider.namespace(), spec))
            } else {
                action_text(provider.namespace(), spec)
            }
        }
    } else if args.json {
        let all: Vec<Value> = registry
            .providers()
            .iter()
            .flat_map(|p| p.actions().iter().map(|a| spec_json(p.namespace(), a)))
            .collect();
        json_text(&json!(all))
    } else {
        registry
            .providers()
            .iter()
            .map(|p| provider_text(registry, p.namespace()))
            .collect::<Vec<_>>()
            .join("\n")
    };
    print!("{text}");
    Ok(exit::OK)
}

fn json_text(value: &Value) -> String {
    format!("{}\n", serde_json::to_string_pretty(value).unwrap_or_default())
}

fn spec_json(namespace: &str, spec: &ActionSpec) -> Value {
    let mut value = serde_json::to_value(spec).unwrap_or(Value::Null);
    value["name"] = json!(format!("{namespace}.{}", spec.name));
    value["signature"] = json!(format!("{namespace}::{}", spec.signature()));
    value
}

fn provider_text(registry: &Registry, namespace: &str) -> String {
    let Some(provider) = registry.get(namespace) else {
        return String::new();
    };
    let mut out = String::new();
    let status = if provider.is_configured() {
        "configured"
    } else {
        "not configured"
    };
    let _ = writeln!(out, "{namespace} — {} ({status})", provider.summary());
    let signatures: Vec<String> = provider
        .actions()
        .iter()
        .map(|s| format!("{namespace}::{}", s.signature()))
        .collect();
    let width = signatures.iter().map(String::len).max().unwrap_or(0);
    for (spec, signature) in provider.actions().iter().zip(&signatures) {
        let _ = writeln!(
            out,
            "  {signature:<width$}  {:<11}  {}",
            spec.effect.as_str(),
            spec.summary
        );
    }
    out
}

fn targets_text(spec: &ActionSpec) -> String {
    match spec.targets {
        Targets::None => "none".to_owned(),
        Targets::One | Targets::OneOf(_) => "1 per call".to_owned(),
        Targets::CountOf(param) => format!("one per item of `{param}`"),
    }
}

fn action_text(namespace: &str, spec: &ActionSpec) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{namespace}::{}", spec.signature());
    let _ = writeln!(out, "  {}", spec.summary);
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "  effect:      {}{}",
        spec.effect,
        if spec.effect.is_mutating() {
            " (not sent in plan mode; counted by --max-changes)"
        } else {
            ""
        }
    );
    let _ = writeln!(
        out,
        "  idempotent:  {}",
        if spec.idempotent {
            "yes"
        } else {
            "no (never resent after an ambiguous failure)"
        }
    );
    if !spec.idempotent && spec.effect.is_mutating() {
        let _ = writeln!(
            out,
            "  in doubt:    {}",
            match spec.probe {
                Some(probe) => format!("probed on resume: {probe}"),
                None => "no probe: a resumed run waits for `runbook runs resolve`".to_owned(),
            }
        );
    }
    let _ = writeln!(out, "  targets:     {}", targets_text(spec));
    let _ = writeln!(out, "  returns:     {}", spec.returns);
    if let Some(records) = spec.records {
        let record = records.record();
        let _ = writeln!(out, "  record:      {} {{{}}}", record.name, record.fields.join(", "));
    }
    if spec.params.is_empty() {
        let _ = writeln!(out, "  parameters:  none");
    } else {
        let _ = writeln!(out, "  parameters:");
        for p in spec.params {
            let how = if p.required { "required" } else { "optional" };
            let _ = writeln!(out, "    {:<10} {:<16} {:<9} {}", p.name, p.ty.as_str(), how, p.doc);
        }
    }
    if !spec.example.is_empty() {
        let _ = writeln!(out, "  example:     {}", spec.example);
    }
    out
}

/// The Markdown reference (docs/actions.md).
pub fn markdown(registry: &Registry) -> String {
    let mut out = String::from(
        "# Action reference\n\nGenerated by `runbook actions --markdown` from the providers' own specs; a test keeps it current.\n\
         Required parameters are positional; optional ones go in a trailing options map (`#{name: value}`).\n\
         Every action is also reachable as `invoke(\"namespace.action\", #{...})`.\n",
    );
    for provider in registry.providers() {
        let ns = provider.namespace();
        let _ = write!(out, "\n## `{ns}` — {}\n\n", provider.summary());
        let _ = writeln!(out, "| action | effect | returns |\n|---|---|---|");
        for spec in provider.actions() {
            let _ = writeln!(
                out,
                "| [`{ns}::{}`](#{ns}{}) | {} | {} |",
                spec.name,
                spec.name,
                spec.effect,
                spec.returns.replace('|', "\\|")
            );
        }
        for spec in provider.actions() {
            let _ = write!(out, "\n### `{ns}::{}`\n\n", spec.signature());
            let _ = writeln!(out, "<a id=\"{ns}{}\"></a>{}\n", spec.name, spec.summary);
            let _ = writeln!(
                out,
                "- effect: **{}**; idempotent: {}; targets: {}",
                spec.effect,
                if spec.idempotent { "yes" } else { "no" },
                targets_text(spec)
            );
            let _ = writeln!(out, "- returns: {}", spec.returns);
            if !spec.idempotent && spec.effect.is_mutating() {
                let _ = writeln!(
                    out,
                    "- in doubt (sent, never answered) on resume: {}",
                    match spec.probe {
                        Some(probe) => format!("probed — {probe}"),
                        None => "no probe; the run waits as `needs_attention` for `runbook runs resolve`".to_owned(),
                    }
                );
            }
            if !spec.params.is_empty() {
                let _ = writeln!(out, "\n| parameter | type | | |\n|---|---|---|---|");
                for p in spec.params {
                    let _ = writeln!(
                        out,
                        "| `{}` | {} | {} | {} |",
                        p.name,
                        p.ty.as_str(),
                        if p.required { "required" } else { "optional" },
                        p.doc
                    );
                }
            }
            if !spec.example.is_empty() {
                let _ = write!(out, "\n```rhai\n{}\n```\n", spec.example);
            }
        }
    }
    out
}
