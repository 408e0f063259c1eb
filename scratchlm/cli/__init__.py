"""The command line: ``main.py`` holds the usage string (the one place options and defaults are
written) and ``main()``; ``options.py`` the option converters; one module per command."""
