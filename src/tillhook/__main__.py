from tillhook.cli import main

raise SystemExit(main())
