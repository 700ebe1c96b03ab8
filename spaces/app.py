"""ftapp on a Hugging Face Space: demo mode, Hugging Face sign-in, state under /data when
persistent storage is attached. Assembled by `ftapp spaces build OUT`; see README.md."""

import os

from ftapp.spaces import space_environment

# Before anything reads the settings: defaults for a Space, overridden by Space variables.
os.environ.update(space_environment(os.environ))

from ftapp.ui.app import main  # noqa: E402  (settings must be in the environment first)

if __name__ == "__main__":
    main()
