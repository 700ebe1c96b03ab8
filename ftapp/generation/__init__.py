"""The background answer queue: answers to generate are rows of a work list (session answers
for the Arena, evaluation answers for automatic metrics), claimed, generated through the
serving backend several at a time, and written back with their progress and failure reasons.
The Arena and Evaluate both use it; neither imports the other."""
