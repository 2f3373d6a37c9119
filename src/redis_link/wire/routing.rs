//! `routingData`, the body of a `routing_change`, in each shape peers write it, to route events.

use serde_json::{Map, Value};

use super::DropReason;
use super::reason::text;
use crate::catalog::{Catalog, Output, RouteError, Variable, VoltRange};
use crate::motion::checked_slew;
use crate::state::{EventKind, Route};

/// The keys that make a `routingData` object one route change (ours, or an older bot's overlay
/// message, which names the variable `lzxVariable`) rather than a map of outputs.
const ROUTE_CHANGE_KEYS: [&str; 4] = ["action", "output", "variable", "lzxVariable"];

/// The route events a `routingData` object asks for. Three shapes, each validated like every other
/// source (catalogue names, `Catalog::check_route`):
///
/// * ours: `{"action": "add", "output", "variable", "range"?, "safe"?, "slew"?}` or `{"action": "remove", "output"}`;
/// * older bots' overlay messages: the same with `lzxVariable` for `variable` (both may be given if
///   they name the same variable);
/// * older bots' routing table: `{"es9out#3": "doorway#1.gain", …}`, output → variable, at most as
///   many entries as the catalogue has outputs, each one an `add` with the output's default range.
///
/// An object mixing the first two with a map entry is refused; so is any other action than `add` or
/// `remove` ([`DropReason::UnknownAction`]).
pub(super) fn routing_kinds(routing: &Map<String, Value>, catalog: &Catalog) -> Result<Vec<EventKind>, DropReason> {
    if ROUTE_CHANGE_KEYS.iter().any(|k| routing.contains_key(*k)) {
        if routing.keys().any(|k| catalog.output(k).is_some()) {
            return Err(DropReason::Malformed);
        }
        return routing_change(routing, catalog).map(|kind| vec![kind]);
    }
    routing_map(routing, catalog)
}

/// One route change: `add` or `remove`.
fn routing_change(routing: &Map<String, Value>, catalog: &Catalog) -> Result<EventKind, DropReason> {
    let action = text(routing, "action")?;
    if !matches!(action, "add" | "remove") {
        return Err(DropReason::UnknownAction);
    }
    let output = catalog.output(text(routing, "output")?).ok_or(DropReason::UnknownOutput)?;
    if action == "remove" {
        return Ok(EventKind::Route { output, route: None });
    }
    let named = |field: &str| -> Result<Option<Variable>, DropReason> {
        match routing.get(field) {
            None => Ok(None),
            Some(v) => {
                let name = v.as_str().ok_or(DropReason::Malformed)?;
                catalog.parse_variable(name).map(Some).ok_or(DropReason::UnknownVariable)
            }
        }
    };
    let variable = match (named("variable")?, named("lzxVariable")?) {
        (Some(v), None) | (None, Some(v)) => v,
        (Some(a), Some(b)) if a == b => a,
        _ => return Err(DropReason::Malformed),
    };
    let default = catalog.output_range(&output);
    let range = match routing.get("range").and_then(Value::as_array).map(Vec::as_slice) {
        None => default,
        Some([lo, hi]) => {
            let (Some(low), Some(high)) = (lo.as_f64(), hi.as_f64()) else { return Err(DropReason::Malformed) };
            // A value beyond f32 becomes infinite and is refused below as out of limit.
            #[allow(clippy::cast_possible_truncation)] // Voltages are small; f32 is what OSC sends.
            VoltRange { low: low as f32, high: high as f32 }
        }
        Some(_) => return Err(DropReason::Malformed),
    };
    let safe = match routing.get("safe") {
        None | Some(Value::Null) => range.low,
        #[allow(clippy::cast_possible_truncation)] // As above.
        Some(v) => v.as_f64().ok_or(DropReason::Malformed)? as f32,
    };
    let slew = match routing.get("slew") {
        None | Some(Value::Null) => 0.0,
        Some(v) => checked_slew(v.as_f64().ok_or(DropReason::Malformed)?).map_err(|_| DropReason::OutOfRange)?,
    };
    checked_route(catalog, output, Route { variable, range, safe, slew })
}

/// An older bot's routing table, output → variable: one route per output, each with the output's
/// default range and its bottom as the safe voltage, in output name order. All or nothing.
fn routing_map(routing: &Map<String, Value>, catalog: &Catalog) -> Result<Vec<EventKind>, DropReason> {
    // Bounded before any name is looked up: no map can name more outputs than exist.
    if routing.is_empty() || routing.len() > catalog.output_count() {
        return Err(DropReason::Malformed);
    }
    let mut routes: std::collections::BTreeMap<Output, Variable> = std::collections::BTreeMap::new();
    for (name, value) in routing {
        let output = catalog.output(name).ok_or(DropReason::UnknownOutput)?;
        let variable = catalog.parse_variable(value.as_str().ok_or(DropReason::Malformed)?);
        let variable = variable.ok_or(DropReason::UnknownVariable)?;
        // One jack in two spellings (`es9out#1`, `ES9OUT#1`): which route would win is no one's guess.
        if routes.insert(output, variable).is_some() {
            return Err(DropReason::Malformed);
        }
    }
    routes
        .into_iter()
        .map(|(output, variable)| {
            let range = catalog.output_range(&output);
            checked_route(catalog, output, Route::new(variable, range))
        })
        .collect()
}

/// The route, once `Catalog::check_route` (the one limit rule) allows it on `output`.
fn checked_route(catalog: &Catalog, output: Output, route: Route) -> Result<EventKind, DropReason> {
    match catalog.check_route(&output, route.range, route.safe) {
        Ok(()) => Ok(EventKind::Route { output, route: Some(route) }),
        Err(RouteError::BadRange { .. }) => Err(DropReason::OutOfRange),
        Err(RouteError::RangeOutOfLimit { .. } | RouteError::SafeOutOfRange { .. }) => Err(DropReason::OutOfLimit),
    }
}

#[cfg(test)]
mod tests;
