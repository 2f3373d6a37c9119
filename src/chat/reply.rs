//! What the bot says back about a command that was done or answered: the same words in Twitch chat,
//! the terminal, the overlay's state updates and the admin API's `reply` field. The coordinator
//! decides; this says it. (A refusal is a `coord::Refusal`, which prints its own reason.)

use crate::coord::{Answer, Done};
use crate::state::EventKind;

/// The reply to a command that was done; `None` when there is nothing to say (a parameter set).
pub fn done(done: &Done) -> Option<String> {
    match done {
        // A viewer's value or vote is seen on the overlay; answering each would flood the chat.
        Done::Set | Done::Voted { .. } => None,
        Done::Recalled { name, values } => Some(format!("recalled scene {name} ({values} values)")),
        Done::Admin(kind) => confirmation(kind),
        Done::Answer(answer) => Some(self::answer(answer)),
    }
}

/// What an applied admin event did, in words; `None` for a parameter value.
pub fn confirmation(kind: &EventKind) -> Option<String> {
    Some(match kind {
        EventKind::Set { .. } | EventKind::Vote { .. } => return None,
        EventKind::ClearAll => "cleared all parameters".to_owned(),
        EventKind::Overlay { enabled } => format!("overlay {}", if *enabled { "on" } else { "off" }),
        EventKind::Emergency { active: true, message } => match message {
            Some(m) => format!("EMERGENCY STOP: {m}"),
            None => "EMERGENCY STOP: outputs at safe values".to_owned(),
        },
        EventKind::Emergency { active: false, .. } => "resumed".to_owned(),
        EventKind::Route { output, route: Some(r) } if r.slew > 0.0 => {
            format!("routed {output} → {} (slew {} V/s)", r.variable, r.slew)
        }
        EventKind::Route { output, route: Some(r) } => format!("routed {output} → {}", r.variable),
        EventKind::Route { output, route: None } => format!("removed route {output}"),
        EventKind::Mode { mode: crate::state::Mode::Anarchy } => "anarchy: every command applies at once".to_owned(),
        EventKind::Mode { mode } => format!("{mode}: each command is a vote, the median wins"),
        EventKind::Lock { target, locked: true } => format!("locked {target}"),
        EventKind::Lock { target, locked: false } => format!("unlocked {target}"),
        EventKind::Scene { name, scene: Some(scene) } => format!("saved scene {name} ({} values)", scene.values.len()),
        EventKind::Scene { name, scene: None } => format!("deleted scene {name}"),
    })
}

/// The answer to an admin question, in words.
pub fn answer(answer: &Answer) -> String {
    match answer {
        Answer::Routes(routes) if routes.is_empty() => "no routes".to_owned(),
        Answer::Routes(routes) => {
            let listed: Vec<String> = routes.iter().map(|(o, v)| format!("{o} → {v}")).collect();
            format!("routes: {}", listed.join(", "))
        }
        Answer::Instances(live) => format!("{} instance(s) online: {}", live.len(), live.join(", ")),
        Answer::NotRouted(output) => format!("{output} is not routed"),
        Answer::Mode(mode) => format!("mode: {mode}"),
        Answer::Scenes(scenes) if scenes.is_empty() => "no scenes saved".to_owned(),
        Answer::Scenes(scenes) => {
            let listed: Vec<String> = scenes.iter().map(|(name, n)| format!("{name} ({n})")).collect();
            format!("scenes: {}", listed.join(", "))
        }
        Answer::NoScene(name) => format!("no scene named {name} (see scene list)"),
        Answer::Lesson(lesson) => super::help::say(lesson),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{Catalog, VoltRange};
    use crate::state::Route;

    #[test]
    fn replies_read_as_the_older_bot_and_our_docs_say() {
        let c = Catalog::builtin();
        let out = c.output("es9out#1").expect("output");
        let var = c.parse_variable("doorway#1.threshold").expect("variable");
        assert_eq!(done(&Done::Set), None);
        assert_eq!(answer(&Answer::Routes(Vec::new())), "no routes");
        assert_eq!(answer(&Answer::Routes(vec![(out.clone(), var.clone())])), "routes: es9out#1 → doorway#1.threshold");
        assert_eq!(answer(&Answer::Instances(vec!["a".into(), "b".into()])), "2 instance(s) online: a, b");
        assert_eq!(answer(&Answer::NotRouted(out.clone())), "es9out#1 is not routed");
        let route = EventKind::Route { output: out.clone(), route: Some(Route::new(var, VoltRange::LZX)) };
        assert_eq!(done(&Done::Admin(route)).as_deref(), Some("routed es9out#1 → doorway#1.threshold"));
        let slewed = EventKind::Route {
            output: out.clone(),
            route: Some(Route {
                slew: 2.5,
                ..Route::new(c.parse_variable("doorway#1.gain").expect("v"), VoltRange::LZX)
            }),
        };
        assert_eq!(confirmation(&slewed).as_deref(), Some("routed es9out#1 → doorway#1.gain (slew 2.5 V/s)"));
        let stop = EventKind::Emergency { active: true, message: Some("strobe".into()) };
        assert_eq!(confirmation(&stop).as_deref(), Some("EMERGENCY STOP: strobe"));
        assert_eq!(
            confirmation(&EventKind::Route { output: out, route: None }).as_deref(),
            Some("removed route es9out#1")
        );
    }
}
