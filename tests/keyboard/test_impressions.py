"""The live counter of one typed sentence, and the simulated typist, against counts worked out by hand."""

import pytest

from common import live_counts
from keyboard.impressions import SentenceTracker, base_version, chips
from keyboard.replay import Typist, replay
from tests.keyboard.helpers import VocabularyPredictor


def counts(**values):
    return {**live_counts.zero(), **values}


def show(tracker, text, *suggested):
    """Shows chips for ``text`` the way the app does (in the typed case), and returns them."""
    shown = chips(text, suggested)
    tracker.shown(text, shown)
    return shown


def test_words_shown_at_start_after_letters_and_accepted():
    t = SentenceTracker()
    show(t, "", "the", "a", "my")                 # "the" first at its start: shown@1, start@1
    assert show(t, "T", "the", "to") == ("The", "To")  # typed case; compared lower-cased
    t.accepted("T", "The", "The ")                # 1 of 3 letters typed: 2 saved
    show(t, "The ", "dog", "big", "cat")          # "cat" third at its start: start@3, shown@3
    show(t, "The c", "car", "cat", "can")
    show(t, "The ca", "cat", "cats")              # first only after two letters: shown@1, not start@1
    show(t, "The cat", "cat")                     # complete: "before the word was complete" no longer holds
    show(t, "The cat ", "on", "in", "to")         # "sat" never at its start …
    show(t, "The cat s", "saw", "sun", "see")
    show(t, "The cat sa", "saw", "sat", "sad")    # … but second after "sa": shown@3 only
    # the: shown@1, start@1, accepted. cat: shown@1 (at "ca"), start@3. sat: shown@3.
    # letters: "Thecatsat" = 9; saved: "The" 3 letters − 1 typed = 2.
    assert t.finished("The cat sat") == counts(words=3, shown_at_1=2, shown_at_3=3, start_at_1=1, start_at_3=2,
                                               accepted=1, letters=9, letters_saved=2)
    assert t.finished("The cat sat") == counts(words=3, letters=9)  # finishing starts afresh


def test_accept_then_edit_is_modified_and_saves_nothing():
    t = SentenceTracker()
    show(t, "", "the", "a", "i")                  # "a" second at its start: start@3
    t.accepted("", "a", "a ")                     # 1 letter, none typed: 1 saved
    show(t, "a ", "dog", "cat", "man")            # "dog" first at the start of the second word …
    t.accepted("a ", "dog", "a dog ")
    show(t, "a dog", "dog", "dogs", "done")       # … backspaced: "dogs" second after "dog"
    show(t, "a dogs", "dogs")
    show(t, "a dogs ", "ran", "run", "sat")       # "ran" first at its start
    show(t, "a dogs r", "ran")
    # a: start@3, shown@3, accepted (1 saved). dogs: shown@3 (after "dog"; "dog" at its start is another
    # word), accepted as "dog" then changed: modified, 0 saved. ran: shown@1, start@1.
    # letters: "adogsran." = 9.
    assert t.finished("a dogs ran.") == counts(words=3, shown_at_1=1, shown_at_3=3, start_at_1=1, start_at_3=2,
                                               accepted=2, modified=1, letters=9, letters_saved=1)


def test_punctuation_is_no_word_and_a_deleted_accept_counts_nothing():
    t = SentenceTracker()
    show(t, "", "well", "oh", "yes")
    show(t, "Well, ", "cat", "the", "yes")        # after a comma the next word starts: "yes" third
    t.accepted("Well, ", "cat", "Well, cat ")     # accepted, then deleted back to "Well, " and "yes" typed:
    show(t, "Well, ", "cat", "the", "yes")        # an accept at position 1 replaced by another word
    # well: shown@1, start@1. yes: start@3, shown@3, accepted "cat" but finished as "yes": modified.
    # letters: "Well,yes!" = 9.
    assert t.finished("Well, yes!") == counts(words=2, shown_at_1=1, shown_at_3=2, start_at_1=1, start_at_3=2,
                                              accepted=1, modified=1, letters=9)
    t.accepted("Oh ", "hi", "Oh hi ")             # the accepted second word is then deleted entirely
    assert t.finished("Oh") == counts(words=1, letters=2)


def test_reset_and_a_skipped_sentence_count_nothing():
    t = SentenceTracker()
    show(t, "", "hello")
    t.reset()                                     # the line was cleared unfinished: the chip is forgotten
    assert t.finished("hello") == counts(words=1, letters=5)
    show(t, "", "hello")
    t.reset(skip_sentence=True)                   # resumed mid-line after incognito
    show(t, "hello ", "world")
    assert t.finished("hello world") == live_counts.zero()
    show(t, "", "hello")                          # the next sentence counts again
    assert t.finished("hello") == counts(words=1, shown_at_1=1, shown_at_3=1, start_at_1=1, start_at_3=1, letters=5)


@pytest.mark.parametrize("version, base", [("0003", "0003"), ("0003 (personalized)", "0003"), (None, "none"),
                                           ("", "none")])
def test_base_version(version, base):
    assert base_version(version) == base


def test_replay_accepts_the_leftmost_chip_as_soon_as_it_shows_the_word():
    # "The cat sat on the mat.": at each word's start the chips are (the, cat, sat).
    #   the: first at start, accepted (3 saved); cat: second at start, accepted (3); sat: third, accepted (3);
    #   on: not at start, "o" -> (on,), accepted (1 saved); the: first at start (3); mat: after "m" (2);
    #   "." replaces the accepted word's space and ends the sentence.
    #   words 6, shown@1 the on the mat = 4, shown@3 6, start@1 2, start@3 4, accepted 6,
    #   letters "Thecatsatonthemat." 18, saved 15.
    # "A dog, ran": "a" is not at its start and complete once typed (nothing accepted); dog after "d" (2 saved),
    #   "," attaches; ran after "r" (2 saved), then Enter. words 3, shown@1 2, shown@3 2, accepted 2,
    #   letters "Adog,ran" 8, saved 4.
    assert replay(VocabularyPredictor(), ["The cat sat on the mat.", "A dog, ran"]) == counts(
        words=9, shown_at_1=6, shown_at_3=8, start_at_1=2, start_at_3=4, accepted=8, letters=26, letters_saved=19)


def test_typist_types_what_no_chip_shows_and_ends_with_enter():
    typist = Typist("Hi, you")
    keys = [typist.next_key(shown) for shown in [(), (), ("you", "yes"), ()]]
    assert keys == [("type", "H"), ("type", "i"), ("type", ","), ("type", " ")]
    assert typist.next_key(("yes", "You")) == ("accept", 1)  # case does not matter
    assert typist.next_key(()) == ("enter", "")


def test_punctuation_after_an_accepted_word_ends_the_sentence_as_in_the_app():
    class Recording(VocabularyPredictor):
        def __init__(self):
            super().__init__()
            self.calls = []

        def suggest(self, text, k=3):
            self.calls.append(text)
            return super().suggest(text, k)

    predictor = Recording()
    # "mat" is accepted ("on the mat "); "." replaces its space, a change of its own, then ends the sentence,
    # so the line is cleared and the chips are asked for "" again, never for "on the mat."; Enter clears it
    # after " A cat" (the rest of the line, typed as the app would, from its leading space).
    counts = replay(predictor, ["on the mat. A cat"])
    assert predictor.calls == ["", "o", "on ", "on the ", "on the m", "on the mat ",
                               "", " ", " A", " A ", " A cat ", ""]
    assert counts["words"] == 5 and counts["letters"] == len("onthemat.Acat")


def test_replay_never_shows_a_blocked_word():
    # cat blocked: at each start the chips are (the, sat, on). the: first at start, accepted (3 saved);
    # cat: never shown ("c" -> (cats,), not the word), typed in full; sat: second at start, accepted (3 saved).
    # words 3, shown@1 1, shown@3 2, start@1 1, start@3 2, accepted 2, letters "Thecatsat" 9, saved 6.
    assert replay(VocabularyPredictor(), ["The cat sat"], blocked=frozenset({"cat"})) == counts(
        words=3, shown_at_1=1, shown_at_3=2, start_at_1=1, start_at_3=2, accepted=2, letters=9, letters_saved=6)


def test_replay_on_device_types_sentences_its_predictor_never_learned(tmp_path):
    from keyboard.replay import replay_on_device
    from keyboard.store import Device

    # 10 sentences: the newest 2 are held out; the typist types the newest 1, "zebra" appears only there,
    # so the frequency fallback (no model installed) cannot have learned it and never shows it.
    with Device(tmp_path / "d", create=True) as device:
        device.append_many((float(i), "the cat sat") for i in range(9))
        device.append("the zebra sat", timestamp=99.0)
    version, counts = replay_on_device(tmp_path / "d", 1)
    # the: shown at start (first chip), accepted; zebra: never shown, typed; sat: "sat" follows the
    # word before it only in learned text ("cat sat"), but it is a known word: shown at start among 3.
    assert version == "none" and counts["words"] == 3 and counts["shown_at_3"] == 2
    with Device(tmp_path / "d") as device:
        assert device.live_counts(source="replayed") == {"none": counts}
        assert device.live_counts() == {}  # nothing is counted as a person's typing
    assert replay_on_device(tmp_path / "d", 0) is None
