from leverplus.cli import main

if __name__ == "__main__":  # a process forked for a step (leverplus/steps.py) must not run the CLI again
    raise SystemExit(main())
