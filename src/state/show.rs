//! Show control's registers in State: the mode, locks and scenes, and the ballot's votes.

use std::collections::BTreeMap;

use super::{Ballot, Change, Event, EventKind, Hlc, Register, Stamp, State, Verdict};
use crate::catalog::Variable;
use crate::show::{LockTarget, MAX_LOCKS, MAX_SCENES, Mode, Scene, SceneName};

/// Scene registers kept, deleted ones included: twice the live scenes a show may hold, so deleting
/// and saving under new names never runs into the bound.
pub const MAX_SCENE_REGISTERS: usize = 2 * MAX_SCENES;

impl State {
    /// Applies a mode, lock, scene or vote event (see [`State::apply`]).
    pub(super) fn apply_show(&mut self, event: &Event) -> Option<Change> {
        let stamp = &event.stamp;
        match &event.kind {
            EventKind::Mode { mode } => {
                if !self.mode.write(*mode, stamp) {
                    return None;
                }
                self.ballot = Ballot::default();
                Some(Change::Mode { mode: *mode, start_ms: self.mode_start_ms() })
            }
            EventKind::Lock { target, locked } => {
                if !make_room(&mut self.locks, target, MAX_LOCKS, UNLOCKED) {
                    return None;
                }
                let register = self.locks.entry(target.clone()).or_insert_with(|| Register::new(false));
                register.write(*locked, stamp).then(|| Change::Lock { target: target.clone(), locked: *locked })
            }
            EventKind::Scene { name, scene } => {
                if !make_room(&mut self.scenes, name, MAX_SCENE_REGISTERS, Option::is_none) {
                    return None;
                }
                let register = self.scenes.entry(name.clone()).or_insert_with(|| Register::new(None));
                let saved = scene.is_some();
                // Saving the same values again still counts: the scene's stamp is newer.
                let newer = *stamp > register.stamp;
                register.write(scene.clone(), stamp);
                newer.then(|| Change::Scene { name: name.clone(), saved })
            }
            EventKind::Vote { variable, value } => {
                let (mode, start_ms) = (self.mode.value, self.mode_start_ms());
                let (window, tally) = self.ballot.cast(mode, start_ms, variable, &event.user, *value, stamp).ok()?;
                let closes_at_ms = Ballot::closes_at_ms(mode, start_ms, window)?;
                Some(Change::Vote { variable: variable.clone(), tally, closes_at_ms })
            }
            _ => None,
        }
    }

    /// Decides every democracy window whose grace ran out by `now_ms`; each voted parameter's result.
    pub fn decide(&mut self, now_ms: u64) -> Vec<Verdict> {
        let (mode, start_ms) = (self.mode.value, self.mode_start_ms());
        self.ballot.decide(mode, start_ms, now_ms)
    }

    pub fn mode(&self) -> Mode {
        self.mode.value
    }

    /// When the current mode began (its stamp's wall clock), which numbers democracy's windows.
    pub fn mode_start_ms(&self) -> u64 {
        Hlc::wall_ms(self.mode.stamp.hlc)
    }

    pub fn ballot(&self) -> &Ballot {
        &self.ballot
    }

    /// The lock holding `variable` still, if any (the widest one: `all`, then its module instance).
    pub fn locked_by(&self, variable: &Variable) -> Option<&LockTarget> {
        self.locks().find(|target| target.covers(variable))
    }

    /// Targets locked now, `all` first, then module instances, then parameters.
    pub fn locks(&self) -> impl Iterator<Item = &LockTarget> {
        self.locks.iter().filter(|(_, r)| r.value).map(|(t, _)| t)
    }

    /// True when `target` has a lock register or there is room for one more ([`MAX_LOCKS`]).
    pub fn has_lock_room(&self, target: &LockTarget) -> bool {
        has_room(&self.locks, target, MAX_LOCKS, UNLOCKED)
    }

    pub fn is_locked(&self, target: &LockTarget) -> bool {
        self.locks.get(target).is_some_and(|r| r.value)
    }

    pub fn scene(&self, name: &SceneName) -> Option<&Scene> {
        self.scenes.get(name).and_then(|r| r.value.as_ref())
    }

    /// Saved scenes, by name.
    pub fn scenes(&self) -> impl Iterator<Item = (&SceneName, &Scene)> {
        self.scenes.iter().filter_map(|(n, r)| r.value.as_ref().map(|s| (n, s)))
    }

    /// Installs a scene with the oldest possible stamp (scenes loaded from the scenes file), so any
    /// scene event seen later, from anywhere, wins over it.
    pub fn seed_scene(&mut self, name: SceneName, scene: Scene) {
        if self.scenes.len() < MAX_SCENES {
            self.scenes.entry(name).or_insert(Register { value: Some(scene), stamp: Stamp::zero() });
        }
    }
}

/// A lock register's tombstone: the lock was lifted.
const UNLOCKED: fn(&bool) -> bool = |locked| !*locked;

/// True when `map` holds `key`, has room for one more, or holds a tombstone that could make room.
fn has_room<K: Ord, V>(map: &BTreeMap<K, Register<V>>, key: &K, max: usize, tombstone: fn(&V) -> bool) -> bool {
    map.contains_key(key) || map.len() < max || map.values().any(|r| tombstone(&r.value))
}

/// True when `map` holds `key` or has room for it ([`has_room`]), making room by forgetting the
/// oldest tombstone (an unlock, a deleted scene) when it is full. A forgotten tombstone could let a
/// late copy of what it removed back in; at this bound that takes hundreds of newer removals first.
fn make_room<K: Ord + Clone, V>(
    map: &mut BTreeMap<K, Register<V>>,
    key: &K,
    max: usize,
    tombstone: fn(&V) -> bool,
) -> bool {
    if !has_room(map, key, max, tombstone) {
        return false;
    }
    if !map.contains_key(key) && map.len() >= max {
        let oldest = map.iter().filter(|(_, r)| tombstone(&r.value)).min_by_key(|(_, r)| r.stamp.clone());
        if let Some(oldest) = oldest.map(|(k, _)| k.clone()) {
            map.remove(&oldest);
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;
    use crate::show::MAX_SCENES;

    fn event(n: u64, kind: EventKind) -> Event {
        Event { stamp: Stamp { hlc: n + 1, instance: "a".into() }, wall_ms: n, user: "op".into(), kind }
    }

    #[test]
    fn names_saved_and_deleted_many_times_over_never_fill_the_scenes() {
        let c = Catalog::builtin();
        let mut state = State::default();
        let scene = Scene { values: [(c.parse_variable("doorway#1.gain").expect("v"), 5)].into() };
        let mut n = 0;
        for i in 0..3 * MAX_SCENE_REGISTERS {
            let name = SceneName::parse(&format!("s{i}")).expect("name");
            n += 2;
            assert!(
                state.apply(&event(n, EventKind::Scene { name: name.clone(), scene: Some(scene.clone()) })).is_some()
            );
            assert!(state.apply(&event(n + 1, EventKind::Scene { name, scene: None })).is_some(), "scene {i}");
        }
        assert!(state.scenes.len() <= MAX_SCENE_REGISTERS);
        for i in 0..MAX_SCENES {
            let name = SceneName::parse(&format!("live{i}")).expect("name");
            n += 1;
            let saved = state.apply(&event(n, EventKind::Scene { name, scene: Some(scene.clone()) }));
            assert!(saved.is_some(), "live scene {i}");
        }
        assert_eq!(state.scenes().count(), MAX_SCENES);
    }

    #[test]
    fn locks_lifted_make_room_for_new_ones() {
        let c = Catalog::builtin();
        let mut state = State::default();
        let targets: Vec<LockTarget> = c
            .modules()
            .into_iter()
            .flat_map(|(module, (_, instances, params))| {
                (1..=instances).flat_map(move |i| params.clone().into_iter().map(move |p| format!("{module}#{i}.{p}")))
            })
            .filter_map(|t| LockTarget::parse(&t, &c))
            .chain(std::iter::once(LockTarget::All))
            .collect();
        assert!(targets.len() > MAX_LOCKS, "more targets than lock registers: {}", targets.len());
        let mut n = 0;
        for round in 0..2 {
            for target in &targets {
                n += 2;
                assert!(state.has_lock_room(target), "round {round}: {target}");
                state.apply(&event(n, EventKind::Lock { target: target.clone(), locked: true }));
                state.apply(&event(n + 1, EventKind::Lock { target: target.clone(), locked: false }));
            }
        }
        assert!(state.locks.len() <= MAX_LOCKS);
        assert_eq!(state.locks().count(), 0);
    }
}
