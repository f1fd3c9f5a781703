// A small English corpus for training the tiny model's byte-level BPE. Plain prose, numbers, punctuation and a
// little code, so the merges cover the usual shapes of text.
export const TINY_CORPUS = `
The quick brown fox jumps over the lazy dog. The dog did not mind; it was a warm afternoon and the sun was bright.
Once upon a time, in a small village near the sea, there lived an old fisherman and his wife. Every morning he went
out in his boat before the sun came up, and every evening he came back with fish for the market.
Question: What is the capital of France?
Answer: The capital of France is Paris.
Question: How many days are there in a week?
Answer: There are 7 days in a week, 52 weeks in a year, and 365 days in most years.
User: Can you write a short poem about the moon?
Assistant: The moon is round, the night is long, the stars are singing their quiet song.
Machine learning models are trained on large amounts of text. They learn to predict the next word in a sentence,
and with enough data they can answer questions, write stories, summarize documents and translate between languages.
Batch processing lets a service handle many requests at once. Each request is a prompt; the worker generates text
for every prompt and stores the result, so that the client can read the results when the batch is complete.
In 2023 the team released a model with 7 billion parameters. It was trained on 1,500 billion tokens of web data.
The price was $12.50, or about 10% less than last year. Call 555-0100 between 9:00 and 17:30.
function add(a, b) { return a + b; } const total = add(40, 2); console.log("total:", total);
If you want to go fast, go alone. If you want to go far, go together. Knowledge is power, and power is knowledge.
She said, "Hello, world!" and he answered: 'Good morning.' They both laughed... then went back to work.
The weather today is sunny with a chance of rain in the evening. Tomorrow will be cooler, with strong winds.
Water boils at 100 degrees Celsius and freezes at 0 degrees. The speed of light is about 299,792 kilometers per second.
Reading books, writing letters, and talking with friends are good ways to learn new words and new ideas.
The children were playing in the garden while their parents prepared dinner in the kitchen.
Please summarize the following text in one sentence. Translate the sentence into French. Explain it to a child.
`;
