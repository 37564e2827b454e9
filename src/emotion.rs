//! The one label set mien uses across datasets, and the one place each dataset's names and codes
//! are mapped onto it.

use serde::{Deserialize, Serialize};

/// An emotion, in mien's canonical order (FERPlus order: the seven basic emotions plus neutral
/// and contempt).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Emotion {
    Neutral,
    Happiness,
    Surprise,
    Sadness,
    Anger,
    Disgust,
    Fear,
    Contempt,
}

impl Emotion {
    /// All labels in canonical order.
    pub const ALL: [Emotion; 8] = [
        Emotion::Neutral,
        Emotion::Happiness,
        Emotion::Surprise,
        Emotion::Sadness,
        Emotion::Anger,
        Emotion::Disgust,
        Emotion::Fear,
        Emotion::Contempt,
    ];

    /// The canonical lowercase name (`"happiness"`).
    pub fn name(self) -> &'static str {
        match self {
            Emotion::Neutral => "neutral",
            Emotion::Happiness => "happiness",
            Emotion::Surprise => "surprise",
            Emotion::Sadness => "sadness",
            Emotion::Anger => "anger",
            Emotion::Disgust => "disgust",
            Emotion::Fear => "fear",
            Emotion::Contempt => "contempt",
        }
    }

    /// Parses any of the names datasets use for a class folder or label (`happy`, `Happiness`,
    /// `angry`, `sad`, `surprised`, ...). Returns `None` for names that are not an emotion.
    pub fn from_name(name: &str) -> Option<Emotion> {
        Some(match name.trim().to_ascii_lowercase().as_str() {
            "neutral" | "neu" => Emotion::Neutral,
            "happiness" | "happy" | "hap" | "joy" => Emotion::Happiness,
            "surprise" | "surprised" | "sur" => Emotion::Surprise,
            "sadness" | "sad" => Emotion::Sadness,
            "anger" | "angry" | "ang" => Emotion::Anger,
            "disgust" | "disgusted" | "dis" => Emotion::Disgust,
            "fear" | "fearful" | "afraid" | "fea" => Emotion::Fear,
            "contempt" | "con" => Emotion::Contempt,
            _ => return None,
        })
    }

    /// CK+ `Emotion/*_emotion.txt` codes: 0 neutral, 1 anger, 2 contempt, 3 disgust, 4 fear,
    /// 5 happy, 6 sadness, 7 surprise.
    pub fn from_ckplus_code(code: u8) -> Option<Emotion> {
        Some(match code {
            0 => Emotion::Neutral,
            1 => Emotion::Anger,
            2 => Emotion::Contempt,
            3 => Emotion::Disgust,
            4 => Emotion::Fear,
            5 => Emotion::Happiness,
            6 => Emotion::Sadness,
            7 => Emotion::Surprise,
            _ => return None,
        })
    }

    /// FER2013 `emotion` column codes: 0 angry, 1 disgust, 2 fear, 3 happy, 4 sad, 5 surprise,
    /// 6 neutral.
    pub fn from_fer2013_code(code: u8) -> Option<Emotion> {
        Some(match code {
            0 => Emotion::Anger,
            1 => Emotion::Disgust,
            2 => Emotion::Fear,
            3 => Emotion::Happiness,
            4 => Emotion::Sadness,
            5 => Emotion::Surprise,
            6 => Emotion::Neutral,
            _ => return None,
        })
    }

    /// Index in [`Emotion::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for Emotion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dataset_codes_map_to_the_same_emotions() {
        // CK+ 5 and FER2013 3 are both "happy".
        assert_eq!(Emotion::from_ckplus_code(5), Emotion::from_fer2013_code(3));
        assert_eq!(Emotion::from_ckplus_code(1), Some(Emotion::Anger));
        assert_eq!(Emotion::from_fer2013_code(6), Some(Emotion::Neutral));
        assert_eq!(Emotion::from_ckplus_code(8), None);
        for e in Emotion::ALL {
            assert_eq!(Emotion::from_name(e.name()), Some(e));
            assert_eq!(Emotion::ALL[e.index()], e);
        }
        assert_eq!(Emotion::from_name("Happy"), Some(Emotion::Happiness));
        assert_eq!(Emotion::from_name("angry"), Some(Emotion::Anger));
        assert_eq!(Emotion::from_name("cat"), None);
    }
}
