"""The course's models, one readable file each (bigram, and the lessons to come)."""
