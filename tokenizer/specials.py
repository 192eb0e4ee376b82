"""The one definition of fedkb's special tokens. Every other module imports these ids."""

PAD_ID = 0  # padding; masked out of every loss and metric
UNK_ID = 1  # a piece the vocabulary cannot produce
BOS_ID = 2  # start of a sentence
EOS_ID = 3  # end of a sentence

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<s>", "</s>"
WORD_START = "\u2581"  # SentencePiece's marker on a piece that begins a new word
