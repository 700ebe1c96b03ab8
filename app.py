"""Start the ftapp web app: `python app.py` (or `ftapp serve`). Settings come from FTAPP_*."""

from ftapp.ui.app import main

if __name__ == "__main__":
    main()
