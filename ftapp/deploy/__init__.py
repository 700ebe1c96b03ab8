"""Export, push and deployment: merged model folders, Hugging Face Hub pushes with model
cards, the production alias and its monitoring."""
