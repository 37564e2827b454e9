//! Faces followed across video frames, with their emotion probabilities smoothed over time so a
//! label does not flicker from frame to frame.
//!
//! Matching is greedy by box overlap (IoU), best pairs first: at webcam frame rates a face moves
//! little between frames, and there are few faces, so nothing cleverer earns its keep. Smoothing
//! is exponential with a half-life in milliseconds, so it behaves the same at 5 and at 30 frames
//! per second.

use serde::{Deserialize, Serialize};

use crate::detect::boxes::iou;
use crate::pipeline::FaceExpression;

/// One face followed over time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Track {
    /// Stable while the face stays in view.
    pub id: u32,
    /// The latest detection.
    pub face: FaceExpression,
    /// Probabilities smoothed over time (same order as `face.probabilities`).
    pub smoothed: Vec<f32>,
    /// Time of the latest detection, in milliseconds.
    pub last_seen: f64,
    /// Frames in which this face was found.
    pub hits: u32,
}

/// Follows faces from frame to frame.
#[derive(Debug, Clone)]
pub struct FaceTracker {
    tracks: Vec<Track>,
    next_id: u32,
    /// Smoothing half-life in milliseconds (0 = no smoothing).
    pub half_life_ms: f64,
    /// A track unseen for longer than this is dropped.
    pub forget_after_ms: f64,
    /// Smallest overlap for a detection to continue a track.
    pub min_iou: f32,
}

impl Default for FaceTracker {
    fn default() -> Self {
        FaceTracker { tracks: Vec::new(), next_id: 1, half_life_ms: 300.0, forget_after_ms: 700.0, min_iou: 0.3 }
    }
}

impl FaceTracker {
    pub fn new() -> Self {
        Self::default()
    }

    /// Tracks currently held (seen within `forget_after_ms` of the last update).
    pub fn tracks(&self) -> &[Track] {
        &self.tracks
    }

    /// Forgets every face (after the camera restarts, say).
    pub fn reset(&mut self) {
        self.tracks.clear();
    }

    /// Feeds the faces of a frame taken at `now_ms`; returns the tracks seen in this frame.
    pub fn update(&mut self, faces: Vec<FaceExpression>, now_ms: f64) -> Vec<Track> {
        // Every (track, detection) pair that overlaps enough, best overlap first.
        let mut pairs: Vec<(f32, usize, usize)> = Vec::new();
        for (t, track) in self.tracks.iter().enumerate() {
            for (d, face) in faces.iter().enumerate() {
                let o = iou(track.face.face.bbox, face.face.bbox);
                if o >= self.min_iou {
                    pairs.push((o, t, d));
                }
            }
        }
        pairs.sort_by(|a, b| b.0.total_cmp(&a.0));
        let mut track_taken = vec![false; self.tracks.len()];
        let mut face_of: Vec<Option<usize>> = vec![None; faces.len()];
        for (_, t, d) in pairs {
            if !track_taken[t] && face_of[d].is_none() {
                track_taken[t] = true;
                face_of[d] = Some(t);
            }
        }
        let mut seen = Vec::with_capacity(faces.len());
        for (d, face) in faces.into_iter().enumerate() {
            match face_of[d] {
                Some(t) => {
                    let track = &mut self.tracks[t];
                    let dt = (now_ms - track.last_seen).max(0.0);
                    // Weight of the old value after dt: 0.5^(dt / half-life).
                    let keep = if self.half_life_ms > 0.0 { 0.5f64.powf(dt / self.half_life_ms) as f32 } else { 0.0 };
                    if track.smoothed.len() == face.probabilities.len() {
                        for (s, &p) in track.smoothed.iter_mut().zip(&face.probabilities) {
                            *s = keep * *s + (1.0 - keep) * p;
                        }
                    } else {
                        track.smoothed = face.probabilities.clone();
                    }
                    track.face = face;
                    track.last_seen = now_ms;
                    track.hits += 1;
                    seen.push(track.id);
                }
                None => {
                    let id = self.next_id;
                    self.next_id = self.next_id.wrapping_add(1).max(1);
                    let smoothed = face.probabilities.clone();
                    self.tracks.push(Track { id, face, smoothed, last_seen: now_ms, hits: 1 });
                    seen.push(id);
                }
            }
        }
        let forget = self.forget_after_ms;
        self.tracks.retain(|t| now_ms - t.last_seen <= forget);
        self.tracks.iter().filter(|t| seen.contains(&t.id)).cloned().collect()
    }
}

/// What a live loop asks the detector to do with its next frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Step {
    /// The whole cascade ([`crate::FaceDetector::detect_with`]): finds every face.
    Detect,
    /// The cascade without its turned look and close look ([`crate::DetectorConfig::turned_look`],
    /// [`crate::DetectorConfig::close_look`]), which cost several times the rest where a frame
    /// holds no face: the searches of a live video between two whole ones while it holds no
    /// face. Finds every face but heads tilted far and faces only the second opinion sees.
    DetectUpright,
    /// O-Net alone about the faces of the latest answer ([`crate::FaceDetector::follow_with`]).
    Follow(Vec<[f32; 4]>),
    /// Those faces followed and the rest of the frame searched for new ones
    /// ([`crate::FaceDetector::refresh_with`]): the periodic search while faces are held.
    Refresh(Vec<[f32; 4]>),
}

impl Step {
    /// Whether the step searches the frame (the whole of it, or all but the faces it follows).
    pub fn is_search(&self) -> bool {
        !matches!(self, Step::Follow(_))
    }
}

/// When a live loop runs the whole MTCNN cascade and when it only follows the faces it has.
///
/// Faces barely move between two video frames, so most frames need no search: O-Net on a window
/// about each face's last box refines it, at a tenth of the cascade's cost. The cascade still
/// runs when there is no face to follow and when a followed face was lost, and on every
/// [`Self::detect_every`]-th frame it searches the rest of the frame ([`Step::Refresh`]), to find
/// faces that came into view. While no face is held every frame is searched, and every
/// `detect_every`-th of those searches is whole ([`Step::Detect`]); the others leave out the
/// turned look ([`Step::DetectUpright`]), which would multiply the cost of a frame without a face
/// by about seven. A face that enters, upright or tilted, is therefore found by a frame sent at
/// most `detect_every` frames later; with up to `in_flight` frames in the worker, it is labelled
/// at most `detect_every + in_flight` frames after it entered.
#[derive(Debug, Clone)]
pub struct DetectionSchedule {
    /// Frames sent between two full detections, at most (1 = every frame).
    pub detect_every: u32,
    /// Frames sent since the latest full detection was sent.
    since_detect: u32,
    /// The boxes of the latest answer's faces.
    faces: Vec<[f32; 4]>,
    /// A follow-up lost a face: search the next frame.
    lost: bool,
    /// Searches sent since the latest whole one ([`Step::Detect`]).
    since_whole: u32,
}

impl Default for DetectionSchedule {
    fn default() -> Self {
        DetectionSchedule::new(6)
    }
}

impl DetectionSchedule {
    pub fn new(detect_every: u32) -> Self {
        DetectionSchedule {
            detect_every: detect_every.max(1),
            since_detect: 0,
            faces: Vec::new(),
            lost: false,
            since_whole: 0,
        }
    }

    /// The step for the next frame sent.
    pub fn next_step(&mut self) -> Step {
        self.since_detect += 1;
        if self.faces.is_empty() || self.lost {
            self.since_detect = 0;
            self.lost = false;
            self.since_whole += 1;
            if self.since_whole >= self.detect_every {
                self.since_whole = 0;
                Step::Detect
            } else {
                Step::DetectUpright
            }
        } else if self.since_detect >= self.detect_every {
            self.since_detect = 0;
            Step::Refresh(self.faces.clone())
        } else {
            Step::Follow(self.faces.clone())
        }
    }

    /// Records the answer to a frame sent with `step`: its faces' boxes. A face that a follow-up
    /// lost is searched for on the next frame; one that a refresh lost was searched for already.
    pub fn answered(&mut self, step: &Step, faces: &[[f32; 4]]) {
        if let Step::Follow(priors) = step {
            if faces.len() < priors.len() {
                self.lost = true;
            }
        }
        self.faces = faces.to_vec();
    }

    /// Starts over (a new camera, say): the next frame is searched.
    pub fn reset(&mut self) {
        *self = DetectionSchedule::new(self.detect_every);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::Face;

    fn face(x: f32, probs: &[f32]) -> FaceExpression {
        FaceExpression {
            face: Face { bbox: [x, 10.0, x + 100.0, 130.0], score: 0.99, landmarks: [[0.0; 2]; 5] },
            probabilities: probs.to_vec(),
        }
    }

    #[test]
    fn a_moving_face_keeps_its_id_and_a_new_face_gets_another() {
        let mut t = FaceTracker::new();
        let a = t.update(vec![face(0.0, &[1.0, 0.0])], 0.0);
        let b = t.update(vec![face(8.0, &[1.0, 0.0]), face(400.0, &[0.0, 1.0])], 100.0);
        assert_eq!(b.len(), 2);
        assert_eq!(b[0].id, a[0].id);
        assert_ne!(b[1].id, a[0].id);
    }

    #[test]
    fn one_odd_frame_does_not_flip_the_label() {
        let mut t = FaceTracker::new();
        for i in 0..10 {
            t.update(vec![face(0.0, &[0.9, 0.1])], i as f64 * 100.0);
        }
        let odd = t.update(vec![face(0.0, &[0.2, 0.8])], 1000.0);
        assert!(odd[0].smoothed[0] > odd[0].smoothed[1], "{:?}", odd[0].smoothed);
        // A lasting change wins within a second or so.
        let mut last = odd;
        for i in 1..=10 {
            last = t.update(vec![face(0.0, &[0.2, 0.8])], 1000.0 + i as f64 * 100.0);
        }
        assert!(last[0].smoothed[1] > 0.7, "{:?}", last[0].smoothed);
    }

    #[test]
    fn a_face_gone_for_long_is_forgotten() {
        let mut t = FaceTracker::new();
        let a = t.update(vec![face(0.0, &[1.0])], 0.0);
        t.update(vec![], 2000.0);
        assert!(t.tracks().is_empty());
        let b = t.update(vec![face(0.0, &[1.0])], 2100.0);
        assert_ne!(a[0].id, b[0].id);
    }

    #[test]
    fn the_schedule_searches_until_a_face_is_found_then_follows_it() {
        let mut s = DetectionSchedule::new(4);
        let face = [10.0, 10.0, 60.0, 70.0];
        // Nothing found yet: every frame is searched, every fourth search whole (turned look
        // included).
        let steps: Vec<Step> = (0..8)
            .map(|_| {
                let step = s.next_step();
                s.answered(&step, &[]);
                step
            })
            .collect();
        assert!(steps.iter().all(Step::is_search));
        let whole: Vec<bool> = steps.iter().map(|s| *s == Step::Detect).collect();
        assert_eq!(whole, [false, false, false, true, false, false, false, true]);
        let step = s.next_step();
        s.answered(&step, &[face]);
        // Then followed, with a search every fourth frame sent.
        let steps: Vec<Step> = (0..8)
            .map(|_| {
                let step = s.next_step();
                s.answered(&step, &[face]);
                step
            })
            .collect();
        let searched: Vec<bool> = steps.iter().map(Step::is_search).collect();
        assert_eq!(searched, [false, false, false, true, false, false, false, true]);
        assert_eq!(steps[0], Step::Follow(vec![face]));
        // While it holds the face, the periodic search follows it and searches the rest.
        assert_eq!(steps[3], Step::Refresh(vec![face]));
    }

    #[test]
    fn a_lost_face_is_searched_for_on_the_next_frame() {
        let mut s = DetectionSchedule::new(10);
        let (a, b) = ([0.0, 0.0, 50.0, 50.0], [100.0, 0.0, 150.0, 50.0]);
        let step = s.next_step();
        s.answered(&step, &[a, b]);
        let step = s.next_step();
        assert_eq!(step, Step::Follow(vec![a, b]));
        // One of the two was not followed: it may have left, or moved too far.
        s.answered(&step, &[a]);
        assert!(s.next_step().is_search());
        // With two frames in flight, the answer to an older frame may come after a search was
        // sent; the next frames follow what that search finds.
        s.answered(&Step::Detect, &[a, b]);
        assert_eq!(s.next_step(), Step::Follow(vec![a, b]));
        s.reset();
        assert_eq!(s.next_step(), Step::DetectUpright);
    }
}
