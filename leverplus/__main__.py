from leverplus.cli import main

raise SystemExit(main())
